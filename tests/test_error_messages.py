"""Every error message the library raises is checked by a test (issue 14), and this file keeps it so.

`ast` walks `pipeline/`, `features/`, `classifiers/` and `bin/` and collects every `raise` whose
message holds literal text: string constants, f-strings' constant parts, `+` concatenations, `%` and
`.format` templates, a local variable the function assigned such text to, a module constant, or a
function of the same module that returns the message (or the exception). The argument checks of
`pipeline/checks.py` build their messages there, so its own raise sites stand for every
`checks.check_scalar(...)` and `check_choice(...)` call.

`MESSAGES` maps a distinctive literal fragment of each message (never a file or line: modules move)
to the test that checks it. The tests below fail, with a list, when a raise site has no entry, an
entry matches no raise site, a named test does not exist, or a named test's source (with the
module-level helpers and fixtures it uses) holds no three-word fragment of the message's literal
text, regex backslashes removed. `NO_TEXT` lists, by function, the raises that carry no text.
"""

import ast
import dataclasses
import os
import re
import sys

import pytest

from bottleneck_cache.pipeline import jobs

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LIBRARY = ("pipeline", "features", "classifiers", "bin")
HOLE = "\x00"  # stands for the parts of a message computed at run time

# A distinctive literal fragment of each message -> "tests/<file>.py::<test function>" that checks it.
MESSAGES = {
    'Expected flags only (--name=value)': 'tests/test_cli.py::test_a_stray_argument_is_one_line_and_exit_1',
    'Expected --{} to be a comma-separated': 'tests/test_augment.py::test_parse_transforms_rejects_bad_lists',
    'Expected one number for --learning_rate.': 'tests/test_fine_tune.py::test_command_refuses_a_list_of_learning_rates',
    'Expected images or folders to': 'tests/test_predict.py::test_command_errors_are_one_message_and_exit_1',
    'Expected only training caches in': 'tests/test_batch.py::test_unpairable_caches_are_refused',
    'Expected a validation cache from': 'tests/test_batch.py::test_unpairable_caches_are_refused',
    'Expected every validation cache to': 'tests/test_batch.py::test_unpairable_caches_are_refused',
    'Expected --{} to name cache': 'tests/test_batch.py::test_expand_files',
    'Expected only validation caches in': 'tests/test_batch.py::test_validation_files_must_be_one_validation_cache_per_extraction',
    'Expected one validation cache per': 'tests/test_batch.py::test_validation_files_must_be_one_validation_cache_per_extraction',
    'Expected the head in': 'tests/test_batch.py::test_a_failed_job_does_not_stop_the_others',
    '(and --saved_model_dir=DIR for a TensorFlow': 'tests/test_export.py::test_bad_arguments_are_one_clear_error',
    'Expected a model written by': 'tests/test_export.py::test_bad_arguments_are_one_clear_error',
    'Expected a network whose layer': 'tests/test_fine_tune.py::test_block_names_by_family',
    'Expected --unfreeze_from to name a layer of': 'tests/test_fine_tune.py::test_bad_arguments_are_one_clear_error',
    'Expected --unfreeze_blocks between 1 and': 'tests/test_fine_tune.py::test_bad_arguments_are_one_clear_error',
    'Expected the export model of': 'tests/test_fine_tune.py::test_bad_arguments_are_one_clear_error',
    'Expected {}, the metrics feature_extraction': 'tests/test_fine_tune.py::test_head_without_its_metrics_or_caches_is_refused',
    'records no': 'tests/test_fine_tune.py::test_head_without_its_metrics_or_caches_is_refused',
    'Expected the {} cache the': 'tests/test_fine_tune.py::test_head_without_its_metrics_or_caches_is_refused',
    'Expected {} to be the cache': 'tests/test_extraction.py::test_changed_image_is_not_silently_reused',
    'Expected {} to be the validation': 'tests/test_augmented_caches.py::test_a_head_trains_on_views_and_refuses_augmented_validation',
    'Expected --dataset_dir: the head was': 'tests/test_fine_tune.py::test_bad_arguments_are_one_clear_error',
    'Expected the images the head': 'tests/test_fine_tune.py::test_bad_arguments_are_one_clear_error',
    'Expected readable images; check --dataset_dir.': 'tests/test_extraction.py::test_all_images_bad_is_an_error',
    'Expected exactly one of --unfreeze_from': 'tests/test_fine_tune.py::test_command_errors_are_one_message_and_exit_1',
    'Expected --unfreeze_from to name a layer.': 'tests/test_datasets.py::test_detect_format_errors',
    'Expected {} to hold the': 'tests/test_datasets.py::test_folder_train_mismatch_names_training_folder',
    'Expected {} to be a head.npz': 'tests/test_predict.py::test_damaged_head_file_is_one_clear_error',
    'Expected {} in format': 'tests/test_cache.py::test_read_validates',
    'Expected a Keras head, one': 'tests/test_error_messages.py::test_a_head_that_is_not_a_keras_head_is_refused',
    'Expected no --weights for this': 'tests/test_predict.py::test_bad_head_and_inputs_are_one_clear_error',
    'Expected --weights=PATH to the weights': 'tests/test_predict.py::test_head_files_and_weights_are_checked_before_any_work',
    'Expected --weights to be the': 'tests/test_bad_inputs.py::test_snapshot_sees_a_changed_or_removed_file',
    "Expected this head's preprocessing": 'tests/test_predict.py::test_head_files_and_weights_are_checked_before_any_work',
    'Expected {} to be the head': 'tests/test_predict.py::test_head_files_and_weights_are_checked_before_any_work',
    'Expected at least one image file': 'tests/test_bad_images.py::test_empty_class_folder_is_one_error_and_writes_nothing',
    'Expected image files ({}) in {}.': 'tests/test_predict.py::test_bad_head_and_inputs_are_one_clear_error',
    'Expected at least one readable image among': 'tests/test_predict.py::test_undecodable_images_are_skipped_and_listed',
    'Expected a head folder written': 'tests/test_predict.py::test_bad_head_and_inputs_are_one_clear_error',
    'Expected {} to be the JSON': 'tests/test_predict.py::test_head_files_and_weights_are_checked_before_any_work',
    'Expected {} to hold {}.': 'tests/test_cache.py::test_read_validates',
    'Expected the trained head': 'tests/test_predict.py::test_bad_head_and_inputs_are_one_clear_error',
    'Expected loss or accuracy columns': 'tests/test_reports.py::test_history_and_misclassified_messages',
    'Expected at least one class': 'tests/test_reports.py::test_bad_predictions_messages',
    'Expected {} of shape (num_samples,).': 'tests/test_reports.py::test_bad_predictions_messages',
    'Expected integer class indices in': 'tests/test_reports.py::test_bad_predictions_messages',
    'Expected {} in [0, {})': 'tests/test_reports.py::test_bad_predictions_messages',
    'Expected as many predictions as': 'tests/test_reports.py::test_bad_predictions_messages',
    'Expected at least one sample.': 'tests/test_reports.py::test_bad_predictions_messages',
    'Expected at least one results': 'tests/test_reports.py::test_plot_results_messages',
    'Expected every results row to': 'tests/test_reports.py::test_plot_results_messages',
    'Expected one filename per label.': 'tests/test_reports.py::test_history_and_misclassified_messages',
    'Expected at least one epoch': 'tests/test_reports.py::test_history_and_misclassified_messages',
    'Expected at least 2 training': 'tests/test_training.py::test_auto_l2_is_chosen_on_the_training_split_only',
    "Expected l2='auto' only with head": 'tests/test_training.py::test_bad_arguments',
    'Expected l2 to be a': 'tests/test_training.py::test_bad_arguments',
    'Expected --{}_file to be a': 'tests/test_training.py::test_split_roles_are_checked',
    'Expected both splits extracted with': 'tests/test_training.py::test_mismatched_pair_is_refused',
    'Expected a validation cache of': 'tests/test_augmented_caches.py::test_a_head_trains_on_views_and_refuses_augmented_validation',
    'Expected disjoint splits; extract both': 'tests/test_training.py::test_overlapping_splits_are_refused',
    'Expected at least one layer': 'tests/test_transfer.py::test_bad_match_and_nothing_matches_are_one_clear_error',
    "Save the model with model.save('model.keras').": 'tests/test_transfer.py::test_a_model_file_of_another_kind_says_how_to_save_one',
    'not exist. Check the path.': 'tests/test_transfer.py::test_command_bad_input_as_a_subprocess',
    'Check that it is a': 'tests/test_transfer.py::test_file_errors_leave_nothing_behind',
    'Pass e.g. --output=model.keras.': 'tests/test_transfer.py::test_command_main',
    'Expected inputs of': 'tests/test_alexnet.py::test_top_needs_227',
    'Expected pooling to be None,': 'tests/test_alexnet.py::test_constructor_arguments_are_checked',
    'a .npy file of a': 'tests/test_alexnet.py::test_wrong_files_are_refused',
    'downloaded. {} a pickle that would call': 'tests/test_alexnet.py::test_wrong_files_are_refused',
    'downloaded. {} a file that is not': 'tests/test_alexnet.py::test_wrong_files_are_refused',
    '{}. {} a pickle that would call': 'tests/test_lab_pickles.py::test_pickle_that_would_run_code_is_refused_and_runs_nothing',
    '{}. {} a file that is not': 'tests/test_lab_pickles.py::test_unreadable_and_missing_files',
    'array of dtype': 'tests/test_alexnet.py::test_wrong_files_are_refused',
    "Expected {} to hold AlexNet's": 'tests/test_alexnet.py::test_missing_layer_is_refused',
    'Expected {} weights of shapes': 'tests/test_alexnet.py::test_wrong_shape_is_refused_naming_the_layer_and_both_shapes',
    'Expected weights=None for AlexNet. Received:': 'tests/test_alexnet.py::test_constructor_arguments_are_checked',
    'Expected AlexNet(weights=None). Received:': 'tests/test_alexnet.py::test_constructor_arguments_are_checked',
    'Expected --precision=float16 only on a': 'tests/test_engines.py::test_precision_errors',
    'Expected --precision=int8 with --engine=openvino (on': 'tests/test_engines.py::test_precision_errors',
    'Expected --engine=openvino on a CPU.': 'tests/test_engines.py::test_engine_resolution',
    'Expected the openvino package for': 'tests/test_engines.py::test_engine_resolution',
    'Expected OpenVINO to run in': 'tests/test_engines.py::test_openvino_refuses_bfloat16_it_would_not_run',
    'Expected calibration images for --precision=int8.': 'tests/test_precision.py::test_int8_model_is_stored_and_reused',
    'Expected the nncf package to': 'tests/test_engines.py::test_int8_without_nncf_says_how_to_install_it',
    'Expected --{} to be letters,': 'tests/test_extraction.py::test_bad_arguments_write_nothing',
    'Expected {} to be a cache': 'tests/test_extraction.py::test_a_file_that_is_not_a_cache_is_never_replaced',
    '(Or pass --overwrite to replace': 'tests/test_extraction.py::test_overwrite_replaces_a_damaged_cache_with_the_same_fingerprint',
    'a cache made with other': 'tests/test_extraction.py::test_changed_image_is_not_silently_reused',
    'Expected at least one readable image;': 'tests/test_extraction.py::test_all_images_bad_is_an_error',
    'Expected 0 <= shard_index <': 'tests/test_resume.py::test_bad_shard_options',
    'Expected --num_shards >= 2 with': 'tests/test_resume.py::test_bad_shard_options',
    'Expected {} shard files of': 'tests/test_resume.py::test_merge_refuses_missing_and_mismatched_shards',
    'Expected --augmentations with': 'tests/test_augmented_caches.py::test_bad_augmentation_options_write_nothing',
    'Expected --network to name a': 'tests/test_bad_inputs.py::test_snapshot_sees_a_changed_or_removed_file',
    'Expected one of: {} (or': 'tests/test_networks.py::test_unknown_network_lists_valid_names',
    'needs inputs of at least': 'tests/test_networks.py::test_input_size',
    "Expected --weights to be 'imagenet',": 'tests/test_networks.py::test_missing_weights_file',
    '(Keras looks there before downloading),': 'tests/test_networks.py::test_failed_download_says_which_file_to_put_where',
    'Expected {}.{}({}) to build the': 'tests/test_networks.py::test_constructor_error_says_what_was_asked',
    'Expected a Keras weights file': 'tests/test_networks.py::test_weights_file_of_another_network',
    'Expected one of: {}.': 'tests/test_networks.py::test_unknown_layer_lists_layers',
    '--input_size or pick another layer.': 'tests/test_networks.py::test_layer_from_the_top_needs_default_size',
    'Expected a float32 measurement to': 'tests/test_precision.py::test_choose_needs_float32',
    'Expected image to be a': 'tests/test_augment.py::test_augment_image_rejects_bad_image',
    'Expected images to be an': 'tests/test_augment.py::test_augment_batch_rejects_bad_arguments',
    'Expected sample_indices to be': 'tests/test_augment.py::test_augment_batch_rejects_bad_arguments',
    'Expected {} to be an': 'tests/test_augment.py::test_augment_batch_rejects_bad_arguments',
    'is not one of them': 'tests/test_augment.py::test_parse_transforms_rejects_bad_lists',
    'is repeated': 'tests/test_augment.py::test_parse_transforms_rejects_bad_lists',
    'class names and feature shape': 'tests/test_reports.py::test_bad_predictions_messages',
    'Expected at least one part': 'tests/test_bad_images.py::test_empty_class_folder_is_one_error_and_writes_nothing',
    'Expected parts of one split': 'tests/test_resume.py::test_shards_of_a_small_split_merge_into_the_unsharded_cache',
    '(run that shard again) or': 'tests/test_bad_images.py::test_empty_class_folder_is_one_error_and_writes_nothing',
    'Received: parts end at sample': 'tests/test_resume.py::test_merge_refuses_gaps_and_overlaps',
    'Expected every part from the': 'tests/test_cache.py::test_read_validates',
    'a fingerprint that does not': 'tests/test_cache.py::test_read_validates',
    '`features` of shape (num_samples, *feature_shape);': 'tests/test_cache.py::test_read_validates',
    '`labels` of shape (num_samples,); received': 'tests/test_cache.py::test_read_validates',
    '`class_names` and `filenames`': 'tests/test_cache.py::test_read_validates',
    'class names; received': 'tests/test_cache.py::test_read_validates',
    '`views` of shape (num_samples,); received': 'tests/test_cache.py::test_read_validates',
    '`filenames` to have one row': 'tests/test_cache.py::test_read_validates',
    '`skipped_reasons` per entry of `skipped_filenames`': 'tests/test_cache.py::test_read_validates',
    'checksum or storage is damaged.': 'tests/test_cache.py::test_flipped_bit_in_features_is_detected',
    'Expected finite values; extract it': 'tests/test_cache.py::test_read_validates',
    '(start, stop, total). Merge only': 'tests/test_cache.py::test_merge_refuses_a_whole_cache_as_a_part',
    'command again to resume it.': 'tests/test_cli.py::test_an_interrupt_is_one_line_and_a_resume_says_so',
    'Expected a file written by': 'tests/test_cache.py::test_read_missing_file',
    'It may be truncated or': 'tests/test_cache.py::test_read_not_hdf5',
    'a bottleneck cache: expected attribute': 'tests/test_cache.py::test_read_validates',
    'this version of bottleneck-cache reads': 'tests/test_cache.py::test_read_validates',
    'command again to finish it.': 'tests/test_cache.py::test_read_validates',
    'dataset `{}` is': 'tests/test_cache.py::test_read_validates',
    'format version {}: {}.': 'tests/test_cache.py::test_read_validates',
    'a valid bottleneck cache: expected': 'tests/test_cache.py::test_read_validates',
    'Expected labels of shape (num_samples,)': 'tests/test_cache.py::test_read_validates',
    'Expected labels in [0,': 'tests/test_cache.py::test_read_validates',
    'Expected a cache file named': 'tests/test_cache.py::test_parse_cache_filename_refuses_another_name',
    'Expected one label, filename and': 'tests/test_cache.py::test_writer_keeps_rows_in_step',
    'Expected finite values; nothing was': 'tests/test_cache.py::test_writer_refuses_non_finite_features',
    '--output_dir, then run the same': 'tests/test_cache.py::test_writer_stops_before_the_disk_is_full',
    'Expected {} to be one': 'tests/test_checks.py::test_check_choice',
    'Expected a folder holding the': 'tests/test_datasets.py::test_cifar10_batches',
    'Expected the data in': 'tests/test_datasets.py::test_cifar10_errors',
    'Expected as many labels as': 'tests/test_datasets.py::test_cifar10_errors',
    'Expected the labels in {} to have': 'tests/test_datasets.py::test_npz_errors',
    'Expected the labels in {} to be integers.': 'tests/test_datasets.py::test_npz_errors',
    'Expected the labels in {} to be >=': 'tests/test_datasets.py::test_npz_errors',
    'Expected the images in {} to have': 'tests/test_datasets.py::test_pickled_images_of_the_wrong_shape_are_refused',
    'Expected the images in {} to be numeric.': 'tests/test_datasets.py::test_npz_errors',
    'Expected the images in {} to be uint8,': 'tests/test_datasets.py::test_npz_refuses_values_outside_0_255',
    'Expected a boolean mask of': 'tests/test_datasets.py::test_split_constructor_errors',
    'Expected indices to be a': 'tests/test_datasets.py::test_npz_errors',
    'Expected indices in [0,': 'tests/test_datasets.py::test_split_constructor_errors',
    'Expected labels of {} in': 'tests/test_datasets.py::test_npz_errors',
    'Expected {} to be a uint8': 'tests/test_datasets.py::test_npz_file_errors',
    "Expected split '{}' labels to": 'tests/test_datasets.py::test_npz_errors',
    "Expected split '{}' to have exactly": 'tests/test_datasets.py::test_split_constructor_errors',
    "Expected split '{}' to have one": 'tests/test_datasets.py::test_split_constructor_errors',
    'Expected image_size to be (height,': 'tests/test_datasets.py::test_decode_images_errors',
    "Expected '{}' to be a readable image.": 'tests/test_datasets.py::test_decode_images_errors',
    'Expected an existing dataset file': 'tests/test_datasets.py::test_detect_format_errors',
    "Expected '{}' to hold one": 'tests/test_datasets.py::test_decode_images_errors',
    'Expected image files ({}) in the': 'tests/test_datasets.py::test_folder_errors',
    'Expected at least one image in': 'tests/test_datasets.py::test_folder_errors',
    'Expected {}/ and {}/ to': 'tests/test_datasets.py::test_folder_train_mismatch_names_training_folder',
    'Expected a folder of class': 'tests/test_datasets.py::test_folder_errors',
    'Expected a train/ (or training/)': 'tests/test_datasets.py::test_folder_refuses_split_layouts_it_would_misread',
    'Expected one training folder in': 'tests/test_datasets.py::test_folder_refuses_split_layouts_it_would_misread',
    'Expected only split folders beside': 'tests/test_datasets.py::test_folder_refuses_split_layouts_it_would_misread',
    'Expected the GTSRB layout (Final_Training/Images/000NN/': 'tests/test_datasets.py::test_gtsrb_errors',
    'Expected labelled GTSRB images in': 'tests/test_datasets.py::test_gtsrb_errors',
    "Expected '{}' to be a readable CSV": 'tests/test_datasets.py::test_cifar10_errors',
    "Expected '{}' to be ';'-separated": 'tests/test_datasets.py::test_gtsrb_errors',
    "Expected the image '{}' listed": 'tests/test_datasets.py::test_npz_refuses_values_outside_0_255',
    'Expected the ClassId of': 'tests/test_augment.py::test_augment_batch_rejects_bad_arguments',
    'Expected a readable dataset folder.': 'tests/test_bad_images.py::test_unreadable_class_folder_is_one_error_and_writes_nothing',
    "Expected '{}' to be a readable IDX": 'tests/test_datasets.py::test_cifar10_errors',
    "Expected '{}' to start with": 'tests/test_datasets.py::test_mnist_errors',
    "Expected '{}' to hold {} bytes": 'tests/test_datasets.py::test_mnist_errors',
    'Expected MNIST IDX files (*-images-idx3-ubyte[.gz]': 'tests/test_datasets.py::test_cifar10_errors',
    'Expected both an images and': 'tests/test_datasets.py::test_mnist_errors',
    'Expected one IDX pair, or': 'tests/test_datasets.py::test_mnist_folder_without_a_test_pair_is_refused',
    "Expected '{}' in '{}' to be a": 'tests/test_datasets.py::test_npz_errors',
    "Expected '{}' in '{}' to be readable.": 'tests/test_datasets.py::test_npz_file_errors',
    'Expected a .npz file for': 'tests/test_datasets.py::test_folder_errors',
    "Expected '{}' to hold arrays": 'tests/test_datasets.py::test_npz_errors',
    "Expected '{}' to be a .npz archive (a": 'tests/test_datasets.py::test_detect_format_errors',
    "Expected '{}' to be a .npz archive of": 'tests/test_datasets.py::test_npz_file_errors',
    "Expected '{}' to be a readable .npz": 'tests/test_datasets.py::test_cifar10_errors',
    'Expected a folder holding train.p': 'tests/test_datasets.py::test_folder_errors',
    'Expected --dataset_format to be one': 'tests/test_datasets.py::test_decode_images_errors',
    'Expected a dataset path for': 'tests/test_datasets.py::test_load_dataset_errors',
    'Expected file and folder names': 'tests/test_datasets.py::test_non_utf8_names_are_refused_before_any_decoding',
    'file with extension': 'tests/test_datasets.py::test_detect_format_errors',
    'folder containing': 'tests/test_datasets.py::test_detect_format_errors',
    'Expected at least two classes': 'tests/test_datasets.py::test_prepare_splits_refuses_fewer_than_two_classes',
    'Expected per_class to be a': 'tests/test_datasets.py::test_select_per_class_errors',
    'Expected at least {} examples': 'tests/test_datasets.py::test_select_per_class_errors',
    'Expected the validation fraction to': 'tests/test_datasets.py::test_split_validation_errors',
    "Expected '{}' to hold a dict": 'tests/test_datasets.py::test_cifar10_errors',
    'Expected allow_pickle=True to load the': 'tests/test_datasets.py::test_pickled_dataset_needs_allow_pickle',
    'which is not plain data': 'tests/test_datasets.py::test_cifar10_errors',
    "Expected '{}' to be a readable pickle": 'tests/test_datasets.py::test_cifar10_errors',
    'is a symbolic': 'tests/test_output_safety.py::test_check_output_dir_accepts_new_empty_and_own_folders',
    'current folder: writing the output': 'tests/test_output_safety.py::test_check_output_dir_accepts_new_empty_and_own_folders',
    "before, outside the inputs' folder.": 'tests/test_output_safety.py::test_folder_outputs_never_replace_what_the_tool_did_not_write',
    'before, or move those files': 'tests/test_output_safety.py::test_folder_outputs_never_replace_what_the_tool_did_not_write',
    '(an earlier output of this': 'tests/test_output_safety.py::test_fine_tune_needs_overwrite_for_its_own_earlier_output',
    'a file path.': 'tests/test_output_safety.py::test_each_refusal_of_the_output_checks_says_how_to_fix_it',
    'another path: inputs are never': 'tests/test_output_safety.py::test_transfer_weights_never_writes_its_input',
    'it, or choose another path.': 'tests/test_output_safety.py::test_each_refusal_of_the_output_checks_says_how_to_fix_it',
    '(its contents are of another': 'tests/test_output_safety.py::test_file_outputs_never_replace_what_the_tool_did_not_write',
    'a writable folder, or fix': 'tests/test_output_safety.py::test_a_read_only_output_folder_is_named_in_the_message',
    'Expected Ray for --executor=ray. Received:': 'tests/test_error_messages.py::test_ray_executor_without_ray_says_how_to_install_it',
    'Expected a file named': 'tests/test_lab_pickles.py::test_unreadable_and_missing_files',
    'is a {} array': 'tests/test_lab_pickles.py::test_anything_but_the_lab_dict_is_refused',
    'with `labels` of shape': 'tests/test_lab_pickles.py::test_anything_but_the_lab_dict_is_refused',
    'classes of dataset': 'tests/test_lab_pickles.py::test_label_outside_the_dataset_classes_is_refused',
    'Expected at least one lab': 'tests/test_bad_images.py::test_empty_class_folder_is_one_error_and_writes_nothing',
    'Expected one pickle per output': 'tests/test_lab_pickles.py::test_import_refuses_a_pickle_named_twice',
    'Expected a Udacity lab bottleneck': 'tests/test_lab_pickles.py::test_name_off_the_pattern_is_refused',
    # Added by hand: keys the proposal script could not choose (shared builders, run-time parts).
    "to be a finite number": "tests/test_checks.py::test_check_scalar_messages",
    "which is a file {} Pass a new folder": "tests/test_output_safety.py::test_each_refusal_of_the_output_checks_says_how_to_fix_it",
    "which is a file {} Pass a folder path": "tests/test_output_safety.py::test_each_refusal_of_the_output_checks_says_how_to_fix_it",
    "which lies under": "tests/test_output_safety.py::test_folders_that_are_only_added_to_must_be_folders",
    "{} a pickled {}": "tests/test_lab_pickles.py::test_anything_but_the_lab_dict_is_refused",
    "{} a dict with keys": "tests/test_lab_pickles.py::test_anything_but_the_lab_dict_is_refused",
    "{} `features` of shape {}": "tests/test_lab_pickles.py::test_anything_but_the_lab_dict_is_refused",
    "{} a non-finite feature (NaN or inf) in row": "tests/test_lab_pickles.py::test_anything_but_the_lab_dict_is_refused",
    "for GTSRB class folder": "tests/test_datasets.py::test_gtsrb_class_folder_without_its_annotation_file",
    "large enough to hold out": "tests/test_datasets.py::test_split_too_small_to_hold_out_a_validation_fraction",
    "classes through its layers": "tests/test_predict.py::test_head_file_whose_layers_do_not_chain_is_refused",
    "Expected image files or folders.": "tests/test_predict.py::test_missing_inputs_are_named",
}

# Raises whose message carries no literal text, as "<function>: <raise statement>" -> why.
NO_TEXT = {
    "__init__: raise": "CacheWriter removes its temporary file and re-raises the error that stopped it.",
    "decode_images: raise": "--on_bad_image=fail re-raises the decoder's DatasetError, whose messages are listed.",
    "_read_npz: raise": "lets the DatasetError raised inside the try (a listed message) pass its OSError handler.",
    "read_npy_weights: raise": "lets its own NetworkError (a listed message) pass the unpickling handler.",
    "_extract_plan: raise": "removes an empty working folder and re-raises whatever stopped the extraction.",
    "_construct: raise": "a constructor's own NetworkError (a listed message) passes Keras' error handler.",
    "call: raise SystemExit(1) from None": "the CLI exit after printing the ValueError's message in one line.",
    "_raise_interrupted: raise Interrupted(signum)": "SIGTERM as KeyboardInterrupt; the CLI prints the line.",
    "wrapped: raise SystemExit(1) from None": "exit status 1 after printing the UsageError's one line.",
    "wrapped: raise SystemExit(128 + signum) from None": "the shell's exit status for a signal, after one line.",
    "run: raise SystemExit(0)": "--version printed the version; exit 0.",
    "main: raise SystemExit(1)": "feature_extraction's batch: a failed job's error is in the summary it printed.",
}


@dataclasses.dataclass(frozen=True)
class RaiseSite:
    """One `raise` in the library: where, and its message with `HOLE` for run-time parts."""

    path: str
    line: int
    function: str
    statement: str
    template: str  # "" when the message carries no literal text

    def __str__(self):
        return f"{self.path}:{self.line} in {self.function}(): {self.template.replace(HOLE, '{}')!r}"


def _assignments(nodes):
    """Maps each simple name assigned (or `+=`-ed) among `nodes` to the values assigned."""
    names = {}
    for node in nodes:
        if isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    names.setdefault(target.id, []).append(node.value)
        elif isinstance(node, (ast.AugAssign, ast.AnnAssign)) and isinstance(node.target, ast.Name):
            if node.value is not None:
                names.setdefault(node.target.id, []).append(node.value)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            names[("def", node.name)] = node  # a nested function that may build a message
    return names


class _Module:
    """A parsed library file: its module-level functions and constants, for resolving messages."""

    def __init__(self, path, root=REPO):
        with open(os.path.join(root, path), encoding="utf-8") as file:
            self.tree = ast.parse(file.read(), path)
        self.path = path
        self.functions = {node.name: node for node in self.tree.body
                          if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))}
        self.constants = _assignments(self.tree.body)

    def message(self, exc, local):
        """The literal text of a raised exception's message; None if it has none."""
        if isinstance(exc, ast.Call) and not (isinstance(exc.func, ast.Name) and (
                exc.func.id in self.functions or ("def", exc.func.id) in local)):
            return _joined([self.text(argument, local) for argument in exc.args])  # any exception class
        return self.text(exc, local)

    def text(self, node, local, depth=0):
        """The literal text of a message expression, `HOLE` for run-time parts; None if it has none."""
        if depth > 4:
            return None
        again = lambda child, scope=local: self.text(child, scope, depth + 1)  # noqa: E731
        if isinstance(node, ast.Constant):
            return node.value if isinstance(node.value, str) else None
        if isinstance(node, ast.JoinedStr):
            return "".join(part.value if isinstance(part, ast.Constant)
                           else (again(part.value) if isinstance(part.value, ast.Name) and part.value.id in local
                                 else None) or HOLE
                           for part in node.values)
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
            left, right = again(node.left), again(node.right)
            return None if left is None and right is None else (left or HOLE) + (right or HOLE)
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mod):
            left = again(node.left)
            return left and re.sub(r"%(\([^)]*\))?[-#0 +]*\d*(\.\d+)?[sdrifgexX]", HOLE, left)
        if isinstance(node, ast.IfExp):
            return _joined([again(node.body), again(node.orelse)])
        if isinstance(node, ast.Name):
            values = local.get(node.id) or self.constants.get(node.id, [])
            scope = local if node.id in local else {}
            return _joined([again(value, scope) for value in values])
        if isinstance(node, ast.Call):
            function = node.func
            if isinstance(function, ast.Attribute) and function.attr == "format":
                template = again(function.value)
                return template and re.sub(r"\{[^{}]*\}", HOLE, template)
            parts = [again(argument) for argument in node.args]
            builder = isinstance(function, ast.Name) and (
                self.functions.get(function.id) or local.get(("def", function.id)))
            if builder:  # a function of this module (or a nested one) that builds the message
                scope = _assignments(ast.walk(builder))
                return _joined([again(child.value, scope) for child in ast.walk(builder)
                                if isinstance(child, ast.Return) and child.value is not None] + parts)
            name = function.attr if isinstance(function, ast.Attribute) else getattr(function, "id", "")
            return _joined(parts) if name[:1].isupper() else None  # an exception's arguments, not str(x)
        return None


def _joined(texts):
    texts = [text for text in texts if text and text.strip(HOLE + " ")]
    return f" {HOLE} ".join(texts) if texts else None


def raise_sites():
    """Every `raise` under the library folders, as `RaiseSite`s, in file order."""
    sites = []
    for top in LIBRARY:
        for folder, subfolders, names in os.walk(os.path.join(REPO, top)):
            subfolders.sort()
            for name in sorted(names):
                if name.endswith(".py"):
                    path = os.path.relpath(os.path.join(folder, name), REPO)
                    sites.extend(_module_sites(_Module(path)))
    return sites


def _module_sites(module):
    sites = []

    def visit(node, function, local):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                visit(child, child.name, _assignments(ast.walk(child)))
                continue
            if isinstance(child, ast.Raise):
                template = module.message(child.exc, local) if child.exc is not None else None
                sites.append(RaiseSite(module.path, child.lineno, function, ast.unparse(child),
                                       " ".join((template or "").split())))
            visit(child, function, local)

    visit(module.tree, "<module>", {})
    return sites


def fragments(template):
    """Regexes for the message's fragments: each run of three literal words.

    A message whose literal text has no three words in a row (e.g. `check_scalar`'s) gets runs of
    three literal words with run-time parts between them, which match any text. A test may stop
    before the full stop or comma that ends a fragment.
    """
    tokens = template.split()
    literal = [HOLE not in token and bool(re.search(r"\w", token)) for token in tokens]
    windows = [tokens[i:i + 3] for i in range(len(tokens) - 2) if all(literal[i:i + 3])]
    if not windows:
        words = [i for i, is_word in enumerate(literal) if is_word]
        size = min(3, len(words))
        windows = [tokens[words[i]:words[i + size - 1] + 1] for i in range(len(words) - size + 1)
                   if size and words[i + size - 1] - words[i] <= size + 2]
    patterns = []
    for window in windows:
        text = " ".join(window).lstrip("('\"`").rstrip(".,;:)'\"`")
        text = re.sub(f"[ {HOLE}]*{HOLE}[ {HOLE}]*", HOLE, text)  # one wildcard per gap: no backtracking blow-up
        patterns.append(re.compile(".{0,200}?".join(re.escape(piece) for piece in text.split(HOLE))))
    return patterns


def _normalized(text):
    return " ".join(text.replace("\\", "").split())


# --------------------------------------------------------------------------------------------------
# The tests' side: a test's source with the module-level helpers, cases and fixtures it uses.


class _TestFile:
    def __init__(self, path):
        self.path = path
        with open(os.path.join(REPO, path), encoding="utf-8") as file:
            self.source = file.read()
        self.tree = ast.parse(self.source, path)
        self.definitions = {}
        for node in self.tree.body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                self.definitions[node.name] = node
            for name in _assignments([node]):
                if isinstance(name, str):
                    self.definitions[name] = node
        self.helpers = {}  # a name this file imports from the tests package -> that file
        for node in self.tree.body:
            if isinstance(node, ast.ImportFrom) and node.module == "tests":
                for alias in node.names:
                    self.helpers[alias.asname or alias.name] = f"tests/{alias.name}.py"


_TEST_FILES = {}


def _test_file(path):
    if path not in _TEST_FILES:
        _TEST_FILES[path] = _TestFile(path) if os.path.isfile(os.path.join(REPO, path)) else None
    return _TEST_FILES[path]


def source_of_test(test_id):
    """The normalized text of a test and of what it uses; None if there is no such test."""
    path, _, name = test_id.partition("::")
    test_file = _test_file(path)
    if test_file is None or not isinstance(test_file.definitions.get(name), ast.FunctionDef):
        return None
    seen, texts, pending = set(), [], [(test_file, test_file.definitions[name], 0)]
    while pending:
        owner, node, depth = pending.pop()
        if (owner.path, id(node)) in seen:
            continue
        seen.add((owner.path, id(node)))
        start = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
        texts.append("\n".join(owner.source.splitlines()[start - 1:node.end_lineno]))
        texts.extend(child.value for child in ast.walk(node)
                     if isinstance(child, ast.Constant) and isinstance(child.value, str))
        if depth < 4:
            pending.extend((found[0], found[1], depth + 1) for found in _uses(owner, node))
    return _normalized("\n".join(texts))


def _uses(owner, node):
    """The definitions `node` refers to: in its own file, in conftest.py, or in an imported tests file."""
    conftest = _test_file("tests/conftest.py")
    for child in ast.walk(node):
        if isinstance(child, ast.Attribute) and isinstance(child.value, ast.Name) \
                and child.value.id in owner.helpers:
            helper = _test_file(owner.helpers[child.value.id])
            if helper and child.attr in helper.definitions:
                yield helper, helper.definitions[child.attr]
        names = [child.id] if isinstance(child, ast.Name) else [child.arg] if isinstance(child, ast.arg) else []
        for name in names:
            for place in (owner, conftest):
                if place and name in place.definitions and place.definitions[name] is not node:
                    yield place, place.definitions[name]
                    break


# --------------------------------------------------------------------------------------------------
# The checks.


@pytest.fixture(scope="module")
def sites():
    return raise_sites()


def shown(template):
    return template.replace(HOLE, "{}")


def assign(sites, keys):
    """Maps each site with text to the keys that claim it.

    A key claims the sites whose message holds it ("{}" in a key stands for a run-time part);
    where several keys match a site, the one that matches the fewest messages claims it (the
    key of a message built by a shared function beats a key of that function's common text).
    """
    messages = {}
    for key in keys:
        messages[key] = {site.template for site in sites if key in shown(site.template)}
    claims = {}
    for site in sites:
        if site.template:
            matching = [key for key in keys if site.template in messages[key]]
            fewest = min((len(messages[key]) for key in matching), default=0)
            claims[site] = [key for key in matching if len(messages[key]) == fewest]
    return claims


def test_the_walk_finds_the_library(sites):
    assert len({site.path for site in sites}) > 20
    assert any(site.path.endswith("checks.py") and "Received:" in site.template for site in sites)


def test_every_message_has_one_registry_entry(sites):
    claims = assign(sites, MESSAGES)
    missing = [str(site) for site, keys in claims.items() if not keys]
    several = [f"{site}: {keys}" for site, keys in claims.items() if len(keys) > 1]
    assert not missing, ("Raise sites whose message has no entry in MESSAGES (add a distinctive fragment "
                         "and the test that checks it):\n" + "\n".join(missing))
    assert not several, "Raise sites claimed by several MESSAGES keys:\n" + "\n".join(several)


def test_every_registry_entry_matches_one_message(sites):
    messages = {key: set() for key in MESSAGES}
    for site, keys in assign(sites, MESSAGES).items():
        for key in keys:
            messages[key].add(site.template)
    stale = [repr(key) for key, templates in messages.items() if not templates]
    ambiguous = [f"{key!r} claims {len(templates)} different messages"
                 for key, templates in messages.items() if len(templates) > 1]
    assert not stale, ("MESSAGES keys that match no raise site (moved or reworded? fix the key):\n"
                       + "\n".join(stale))
    assert not ambiguous, "MESSAGES keys not distinctive enough:\n" + "\n".join(ambiguous)


def test_every_named_test_exists():
    missing = [f"{key!r}: {test_id}" for key, test_id in MESSAGES.items() if source_of_test(test_id) is None]
    assert not missing, "MESSAGES names tests that do not exist:\n" + "\n".join(missing)


def checks_message(source, key, template, others):
    """Whether a test's `source` checks the message `template`, whose registry key is `key`.

    It must hold a fragment of the message (`fragments`), and either the key too or a fragment
    found in none of the `others`, the other messages of its module (messages built by one
    function share its text).
    """
    found = [pattern for pattern in fragments(template) if pattern.search(source)]
    key_pattern = ".{0,200}?".join(re.escape(part.strip()) for part in _normalized(key).split("{}"))
    if re.search(key_pattern, source):
        return bool(found)
    return any(not any(pattern.search(shown(other)) for other in others) for pattern in found)


def test_every_named_test_checks_its_message(sites):
    claimed, neighbours = {}, {}
    for site, keys in assign(sites, MESSAGES).items():
        neighbours.setdefault(site.path, set()).add(site.template)
        for key in keys:
            claimed[key] = site
    unchecked = []
    for key, test_id in MESSAGES.items():
        source = source_of_test(test_id)
        site = claimed.get(key)
        if site and source is not None and not checks_message(
                source, key, site.template, neighbours[site.path] - {site.template}):
            unchecked.append(f"{test_id} does not check {shown(site.template)!r}")
    assert not unchecked, "Tests that do not check the message named for them:\n" + "\n".join(unchecked)


def test_raises_without_text_are_listed(sites):
    found = {f"{site.function}: {site.statement}" for site in sites if not site.template}
    unlisted = sorted(found - set(NO_TEXT))
    stale = sorted(set(NO_TEXT) - found)
    assert not unlisted, ("Raises without literal text: give the message text, or add them to NO_TEXT "
                          "with a reason:\n" + "\n".join(unlisted))
    assert not stale, "NO_TEXT entries that match no raise anymore:\n" + "\n".join(stale)
    assert all(reason.strip() for reason in NO_TEXT.values())


# --------------------------------------------------------------------------------------------------
# The walk itself, on a small module.


def test_message_text_of_each_form(tmp_path):
    source = '''
HINT = "Pass --weights=none " + "for random weights."

def _message(value):
    return f"Expected a built message. Received: {value}."

def _error(value):
    return ValueError("Expected a built error. Received: %s." % value)

def check(value, name):
    if value < 0:
        raise ValueError(f"Expected {name} >= 0. Received: {name}={value}. Pass a count.")
    if value == 1:
        raise ValueError("Expected no " + name + " of one. Received one.")
    if value == 2:
        raise ValueError("Expected {} to differ from {}. Received: two.".format(name, value))
    if value == 3:
        message = "Expected an odd value"
        message += f" other than {value}."
        raise ValueError(message)
    if value == 4:
        raise ValueError(HINT)
    if value == 5:
        raise ValueError(_message(value))
    if value == 6:
        raise _error(value) from None
    try:
        pass
    except OSError as error:
        raise ValueError(error) from None
    raise
'''
    (tmp_path / "probe.py").write_text(source)
    found = [site.template.replace(HOLE, "{}") for site in _module_sites(_Module("probe.py", str(tmp_path)))]
    assert found == [
        "Expected {} >= 0. Received: {}={}. Pass a count.",
        "Expected no {} of one. Received one.",
        "Expected {} to differ from {}. Received: two.",
        "Expected an odd value {} other than {}.",
        "Pass --weights=none for random weights.",
        "Expected a built message. Received: {}.",
        "Expected a built error. Received: {}.",
        "",
        "",
    ]


# --------------------------------------------------------------------------------------------------
# Messages whose module has no test file of its own.


def test_ray_executor_without_ray_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    with pytest.raises(ValueError, match=r"^Expected Ray for --executor=ray\. Received: the ray package is not "
                       r"installed\. Install it with pip install -e '\.\[ray\]' \(or pip install 'ray>=2\.9'\)\.$"):
        with jobs.ray_session():
            pass


def test_a_head_that_is_not_a_keras_head_is_refused():
    from bottleneck_cache.classifiers import heads  # pylint: disable=g-import-not-at-top

    with pytest.raises(ValueError, match=r"^Expected a Keras head, one of \('softmax', 'mlp'\)\. Received: "
                       r"head='logreg'\.$"):
        heads.build_keras_head("logreg", (4,), 2)
