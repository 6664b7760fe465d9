"""Running independent jobs on many machines, through Ray.

A job here is a call of a library function with keyword arguments (for example
one shard of an extraction). Ray schedules them: on a local Ray instance by
default, or on a cluster given by its address. Ray is an optional dependency
(`pip install -e '.[ray]'`) and is imported only when used.
"""

import contextlib

EXECUTORS = ("local", "ray")


def _import_ray():
    try:
        import ray  # pylint: disable=g-import-not-at-top
    except ImportError:
        raise ValueError(
            "Expected Ray for --executor=ray. Received: the ray package is not installed. "
            "Install it with pip install -e '.[ray]' (or pip install 'ray>=2.9')."
        ) from None
    return ray


@contextlib.contextmanager
def ray_session(address=None):
    """Starts or joins Ray for the block and yields the cluster's `(cpus, gpus)`.

    Args:
        address: a Ray cluster address (`"ray://host:10001"`, `"auto"`), or
            None for a new local instance. A session that was already running
            is used as it is and left running.
    """
    ray = _import_ray()
    owns = not ray.is_initialized()
    if owns:
        ray.init(address=address, include_dashboard=False, logging_level="WARNING")
    try:
        resources = ray.cluster_resources()
        yield int(resources.get("CPU", 1)), int(resources.get("GPU", 0))
    finally:
        if owns:
            ray.shutdown()


def run_on_ray(function, calls, num_cpus=1, num_gpus=0, max_retries=3):
    """Runs `function(**kwargs)` for every `kwargs` in `calls` as tasks of the current Ray session.

    A task whose worker dies (a preempted machine) is retried up to
    `max_retries` times; with checkpointed functions it resumes.

    Args:
        function: an importable (module-level) function.
        calls: a list of keyword-argument dicts, one per task.
        num_cpus: CPUs each task reserves.
        num_gpus: GPUs each task reserves (0 on CPU-only clusters).
        max_retries: retries of a task whose worker died.

    Returns:
        The functions' results, in the order of `calls`.
    """
    ray = _import_ray()
    remote = ray.remote(num_cpus=num_cpus, num_gpus=num_gpus, max_retries=max_retries)(function)
    return ray.get([remote.remote(**kwargs) for kwargs in calls])
