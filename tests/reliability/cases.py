"""The bad inputs and faults the suite tries, what happens, and the test that checks it.

The table in docs/reliability.md is rendered from this list (``python tests/reliability/render_table.py``)
and ``test_reliability_table.py`` fails when that page is out of date, when a case names a test that
does not exist, or when a test in this folder is missing from the list.
"""

from __future__ import annotations

from typing import NamedTuple


class Case(NamedTuple):
    area: str
    fault: str  # the bad input or fault, as a user meets it
    behaviour: str  # what happens now
    test: str  # pytest node id (from the repository root)


R = "tests/reliability/"
EVAL, FOLDER, STOP, DISK, INPUT, CONFIG = (
    "Evaluation", "One writer per output folder", "Preemption and signals", "Disk and resume",
    "Bad input files and settings", "Values that were accepted silently",
)
HANG, DOCTOR, VALUES, PATHS, OUTPUTS, TEXT, INSTRUCTIONS = (
    "Nothing blocks forever", "The pre-flight check verifies what the run loads", "Command-line values",
    "Paths and secrets", "Where the commands write", "Text that is not UTF-8", "Instruction runs that produce nothing",
)
FIFO = "refused at once as not a regular file, one line (was: blocked forever)"
NO_HANG_T, DOCTOR_T, VALUES_T, PATHS_T, OUTPUTS_T, TEXT_T, INSTRUCTIONS_T = (
    R + "test_no_hangs.py::", R + "test_doctor_checks.py::", R + "test_values_checked.py::",
    R + "test_paths_and_secrets.py::", R + "test_command_outputs.py::", R + "test_text_input.py::",
    R + "test_instruction_outcome.py::",
)

CASES = [
    # ---- evaluation never silently changes its denominator ----
    Case(EVAL, "test images missing, truncated or not images (3 of 12)",
         "exit 2 naming every file and why; nothing is scored",
         R + "test_eval_coverage.py::test_unreadable_images_stop_the_evaluation_naming_the_files"),
    Case(EVAL, "the same with `run.unreadable_eval_images: empty_answer`",
         "each scored as an empty answer (counted, wrong); `metrics.json` has `num_questions_expected` = "
         "`num_scored` = 12, `skipped_ids: []` and the unreadable ids",
         R + "test_eval_coverage.py::test_empty_answer_scores_every_question_and_lists_the_unreadable"),
    Case(EVAL, "the same on 2 processes, the sampler padding with a repeat",
         "each unreadable question counted once",
         R + "test_eval_coverage.py::test_empty_answer_counts_each_unreadable_question_once_on_two_processes"),
    Case(EVAL, "every test image missing", "exit 2 (was: exit 0 with a 0/0 table)",
         R + "test_eval_coverage.py::test_every_image_missing_is_an_error_not_an_empty_table"),
    Case(EVAL, "`run.test_splits=[tset]`", "exit 2: no data set has a split 'tset', the available ones, "
         "\"Did you mean 'test'?\"", R + "test_eval_coverage.py::test_a_split_name_that_does_not_exist_is_an_error"),
    Case(EVAL, "an empty question file", "exit 2 naming the file",
         R + "test_eval_coverage.py::test_a_data_set_without_test_items_is_an_error"),
    Case(EVAL, "a builder that returns an empty test split", "exit 2 naming data set and split",
         R + "test_eval_coverage.py::test_a_data_set_whose_split_is_empty_is_an_error_for_any_builder"),
    Case(EVAL, "`yes_no_answer: \"maybe\"` in a ground-truth file", "refused naming file and item (was: scored as a miss)",
         R + "test_silent_acceptance.py::test_a_yes_no_answer_other_than_yes_or_no_is_refused"),
    # ---- one writer per output folder ----
    Case(FOLDER, "a second training run on a running run's folder",
         "exit 2: `... is in use by another training run (pid N on this host, since ...)`; the first goes on",
         R + "test_one_writer.py::test_a_second_training_run_in_the_same_folder_is_refused"),
    Case(FOLDER, "an evaluation into a folder a training run owns", "exit 2, nothing written",
         R + "test_one_writer.py::test_an_evaluation_into_a_training_runs_folder_is_refused"),
    Case(FOLDER, "two `generate_instructions.py` on one `--out`", "the second exits 2 and writes nothing",
         R + "test_one_writer.py::test_a_second_instruction_run_on_one_out_folder_is_refused"),
    Case(FOLDER, "two feature-cache builds on one cache folder", "the second exits 2",
         R + "test_one_writer.py::test_a_second_feature_cache_build_is_refused"),
    Case(FOLDER, "a run filling a shared cache that another process fills", "refused, naming the holder",
         R + "test_one_writer.py::test_a_runner_filling_a_shared_cache_that_another_fills_is_refused"),
    Case(FOLDER, "a lock left by a killed process on this host", "taken over, with a warning",
         "tests/common/test_output_lock.py::test_a_dead_writers_lock_is_taken_over_with_a_warning"),
    Case(FOLDER, "a lock held from another host (shared file system)", "refused, naming host and pid and how to "
         "remove the lock", "tests/common/test_output_lock.py::test_a_lock_from_another_host_says_how_to_remove_it"),
    Case(FOLDER, "the ranks of one torchrun job", "share the lock (rank 0 holds it); a held folder is refused on "
         "every rank alike", "tests/common/test_output_lock.py::test_ranks_of_one_job_share_the_lock_and_all_refuse_together"),
    Case(FOLDER, "`run.output_dir` below a file", "exit 2: cannot create the output folder ...: Not a directory",
         R + "test_one_writer.py::test_an_output_folder_that_cannot_be_created_is_a_clear_error"),
    Case(FOLDER, "a read-only output folder", "exit 2 at start: cannot write in the output folder ...: "
         "Read-only file system", R + "test_disk_and_resume.py::test_a_read_only_output_folder_is_a_clear_error_at_start"),
    Case(FOLDER, "a second training run in a folder holding a finished run", "exit 2 naming `--resume auto`, "
         "`--overwrite` and a new folder; not a byte of the folder changes (was: pruning deleted the new run's "
         "checkpoints, `last` pointed at nothing)",
         R + "test_run_folder.py::test_a_second_run_in_a_folder_holding_a_finished_run_is_refused_and_changes_nothing"),
    Case(FOLDER, "`--overwrite` on a folder holding a longer run", "the old run's checkpoints and metrics are "
         "deleted first; keep-last keeps the new run's checkpoints; one history in `metrics.jsonl`",
         R + "test_run_folder.py::test_overwrite_starts_over_and_keep_last_keeps_the_new_runs_checkpoints"),
    Case(FOLDER, "a plain rerun after SIGKILL", "refused naming `--resume auto`, which continues with one "
         "history in `metrics.jsonl` (the lost step's records dropped; was: restarted at step 0, mixed both runs)",
         R + "test_run_folder.py::test_a_rerun_after_sigkill_is_refused_and_resume_auto_continues_one_history"),
    Case(FOLDER, "`--resume` of a checkpoint that later ones of the folder follow", "exit 2 naming them (the run "
         "would replace them one by one)",
         R + "test_run_folder.py::test_resuming_from_a_checkpoint_that_later_ones_follow_is_refused_naming_them"),
    Case(FOLDER, "`--resume` of another folder's checkpoint into a folder holding a run", "refused like a fresh start",
         R + "test_run_folder.py::test_resume_from_another_folder_into_a_folder_holding_a_run_is_refused"),
    Case(FOLDER, "another run's checkpoints among the run's own", "keep-last pruning deletes only the current "
         "run's, at or before its step; `last` points at its newest",
         R + "test_run_folder.py::test_pruning_deletes_only_the_current_runs_checkpoints"),
    # ---- preemption ----
    Case(STOP, "SIGTERM (`scancel`, preemption), DataLoader workers signalled too",
         "the step finishes, a checkpoint is written, exit 75, no traceback",
         R + "test_preemption.py::test_a_stop_signal_checkpoints_the_step_and_exits_75[SIGTERM]"),
    Case(STOP, "SIGUSR1 (`#SBATCH --signal=USR1@120`)", "the same",
         R + "test_preemption.py::test_a_stop_signal_checkpoints_the_step_and_exits_75[SIGUSR1]"),
    Case(STOP, "Ctrl-C", "the same (no traceback)",
         R + "test_preemption.py::test_a_stop_signal_checkpoints_the_step_and_exits_75[SIGINT]"),
    Case(STOP, "a second Ctrl-C while the step finishes", "stops at once, exit 130, one line, no traceback",
         R + "test_preemption.py::test_a_second_ctrl_c_abandons_the_step_at_once"),
    Case(STOP, "SIGUSR1 reaching one rank of two", "both ranks stop after the same step, one checkpoint",
         R + "test_preemption.py::test_one_ranks_signal_stops_every_rank_at_the_same_step"),
    Case(STOP, "the stopped job requeued with `run.resume: auto`", "continues and ends bit-identical to an "
         "uninterrupted run", R + "test_preemption.py::test_a_requeued_run_continues_to_the_same_weights"),
    Case(STOP, "SIGKILL mid-epoch, then `--resume auto`", "ends bit-identical to an uninterrupted run",
         "tests/runners/test_resume.py::test_sigkill_mid_epoch_then_resume_is_bit_identical[runner_epoch-2]"),
    # ---- disk and resume ----
    Case(DISK, "no room for one checkpoint (trainable weights + AdamW state)", "exit 2 at start, saying how much "
         "is free and needed", R + "test_disk_and_resume.py::test_no_room_for_a_checkpoint_stops_the_run_at_start"),
    Case(DISK, "the disk fills during a checkpoint write", "one error line naming the newest usable checkpoint; "
         "no half-written folder; training goes on and the next checkpoint is written",
         R + "test_disk_and_resume.py::test_a_failed_checkpoint_write_is_one_line_and_the_run_goes_on"),
    Case(DISK, "the disk is full at the final checkpoint", "retried `run.final_save_attempts` times, "
         "`run.final_save_retry_wait_s` apart, so space can be freed",
         R + "test_disk_and_resume.py::test_the_final_checkpoint_is_retried_so_no_training_is_lost"),
    Case(DISK, "the final checkpoint never fits", "exit 2 naming the newest usable checkpoint; `last` still "
         "points at it", R + "test_disk_and_resume.py::test_a_final_checkpoint_that_never_fits_is_an_error_naming_the_last_good_one"),
    Case(DISK, "a real disk (tmpfs) fills during training: safetensors' `SafetensorError`", "one error line naming the "
         "newest usable checkpoint; training goes on and writes the next one once there is room (was: the run ended)",
         R + "test_full_disk.py::test_a_disk_that_fills_during_training_costs_one_checkpoint_and_training_goes_on"
         "[weights_SafetensorError]"),
    Case(DISK, "the same with room for the weights but not `state.pt`: torch's `RuntimeError`", "the same",
         R + "test_full_disk.py::test_a_disk_that_fills_during_training_costs_one_checkpoint_and_training_goes_on"
         "[state_torch_RuntimeError]"),
    Case(DISK, "evaluation with too little room for the feature cache", "exit 2 before encoding, naming the cache "
         "folder, what is needed and free; no `.lock` left (was: a bus error)",
         R + "test_full_disk.py::test_the_feature_cache_on_a_full_disk_is_one_line_before_encoding_and_leaves_no_lock"),
    Case(DISK, "a feature segment that meets a full disk while written", "one line, the partial file removed (was: "
         "SIGBUS through the memory map)",
         R + "test_full_disk.py::test_a_feature_segment_that_meets_a_full_disk_is_an_error_not_a_bus_error"),
    Case(DISK, "0 bytes free when `train.py` takes its lock", "exit 2: cannot write the lock file ...: No space "
         "left on device; no `.lock` left (was: OSError traceback)",
         R + "test_full_disk.py::test_a_lock_that_cannot_be_written_at_0_bytes_free_is_one_line[train]"),
    Case(DISK, "the same for `generate_instructions.py`", "the same",
         R + "test_full_disk.py::test_a_lock_that_cannot_be_written_at_0_bytes_free_is_one_line[generate_instructions]"),
    Case(DISK, "the same for `lavis.datasets.download`", "the same",
         R + "test_full_disk.py::test_a_lock_that_cannot_be_written_at_0_bytes_free_is_one_line[download]"),
    Case(DISK, "the same for `lavis.predict`'s answer file", "the same",
         R + "test_full_disk.py::test_a_lock_that_cannot_be_written_at_0_bytes_free_is_one_line[predict]"),
    Case(DISK, "the disk fills while `best/` is written", "one error line; the previous `best/` and its record "
         "stay; a later validation writes it", R + "test_disk_and_resume.py::"
         "test_a_best_checkpoint_that_cannot_be_written_keeps_the_record_of_the_one_on_disk"),
    Case(DISK, "the newest checkpoint's `state.pt` is empty (0 bytes)", "resume falls back to the previous one, "
         "warning why", R + "test_disk_and_resume.py::test_resume_falls_back_from_an_unreadable_newest_checkpoint[empty_state]"),
    Case(DISK, "the newest checkpoint's weights are truncated", "the same",
         R + "test_disk_and_resume.py::test_resume_falls_back_from_an_unreadable_newest_checkpoint[truncated_weights]"),
    Case(DISK, "no checkpoint can be read", "exit 2 listing each one's reason",
         R + "test_disk_and_resume.py::test_resume_with_no_readable_checkpoint_is_an_error"),
    Case(DISK, "resume with another batch size (or world size)", "warning; the epoch continues after the same "
         "sample, converted to batches of the new size",
         R + "test_disk_and_resume.py::test_resume_with_another_batch_size_converts_the_data_position"),
    Case(DISK, "resume on a train set of another size", "warning that the rest of the epoch is not the rest of "
         "the saved one", R + "test_disk_and_resume.py::test_resume_on_a_changed_train_set_says_the_epoch_order_differs"),
    Case(DISK, "a team sharing output folders (umask 002)", "checkpoints, results and run files 0664, folders 0775 "
         "(were 0600 / 0700)", R + "test_silent_acceptance.py::test_output_files_honour_the_umask"),
    Case(DISK, "atomic writes under umask 022", "0644 files, 0755 folders",
         R + "test_silent_acceptance.py::test_atomic_writes_follow_the_umask[umask022]"),
    Case(DISK, "atomic writes under umask 077", "0600 files, 0700 folders",
         R + "test_silent_acceptance.py::test_atomic_writes_follow_the_umask[umask077]"),
    # ---- bad input files and settings: one line instead of a traceback ----
    Case(INPUT, "a Quilt-1M CSV with Latin-1 bytes", "exit 2: file, line and byte, and an `iconv` command",
         R + "test_clear_errors.py::test_a_latin1_quilt_csv_names_the_file_and_line"),
    Case(INPUT, "a captions CSV with Latin-1 bytes (`generate_instructions.py`)", "the same",
         R + "test_clear_errors.py::test_a_latin1_captions_csv_names_the_file_and_line"),
    Case(INPUT, "an empty `instructions.jsonl`", "exit 2 naming the file (was: ValueError)",
         R + "test_clear_errors.py::test_an_empty_instructions_file_names_the_file"),
    Case(INPUT, "`strict: true` and a missing image, in DataLoader workers", "exit 2, one line naming the image "
         "(was: a worker traceback)", R + "test_clear_errors.py::test_strict_mode_inside_dataloader_workers_is_one_line"),
    Case(INPUT, "`run.device=cuda` without a GPU", "exit 2: what torch sees, use cpu or auto",
         R + "test_clear_errors.py::test_cuda_without_a_gpu_is_a_config_error"),
    Case(INPUT, "a PNG given as `--checkpoint`", "one line: neither safetensors nor a torch.save'd state dict "
         "(was: torch's weights_only essay)", R + "test_clear_errors.py::test_a_random_file_as_checkpoint_says_what_it_is_not[png_as_pth]"),
    Case(INPUT, "a broken `.safetensors` as checkpoint", "one line: not a valid safetensors file",
         R + "test_clear_errors.py::test_a_random_file_as_checkpoint_says_what_it_is_not[broken_safetensors]"),
    Case(INPUT, "`convert --src` pointing nowhere", "`error: --src ...: no such file or folder`",
         R + "test_clear_errors.py::test_convert_with_a_missing_src_says_so"),
    Case(INPUT, "`generate_instructions.py` against a port nothing listens on", "stops after one retry budget, "
         "naming the URL (was: every caption retried in turn)",
         R + "test_clear_errors.py::test_a_refused_connection_names_the_url_and_stops_after_the_retry_budget"),
    Case(INPUT, "a stage-1 checkpoint given to a stage-2 model's evaluation", "names `model.init_checkpoint` "
         "(was: \"load it with strict=False\")",
         "tests/models/test_checkpoint_hint.py::test_a_stage1_checkpoint_for_stage2_evaluation_names_model_init_checkpoint"),
    Case(INPUT, "a FIFO named `.png` among the test images", "refused as not a regular file (was: the loader hung)",
         R + "test_silent_acceptance.py::test_a_fifo_named_png_is_refused_without_hanging"),
    Case(INPUT, "instruction image paths with `..`", "refused before any request, naming file and row",
         R + "test_silent_acceptance.py::test_instruction_image_paths_that_escape_the_data_root_are_refused"),
    Case(INPUT, "`--subset` that matches no caption", "exit 2 listing the subsets and splits in the file (was: "
         "exit 0, 0 instructions)", R + "test_silent_acceptance.py::test_a_subset_that_matches_nothing_is_refused"),
    # ---- values that were accepted silently (or refused for the wrong reason) ----
    Case(CONFIG, "`run.feature_cache: off` unquoted (YAML reads a boolean)", "taken as `off` (was: refused)",
         R + "test_silent_acceptance.py::test_feature_cache_on_and_off_read_by_yaml_as_booleans_are_accepted[off]"),
    Case(CONFIG, "`run.feature_cache: on` unquoted", "taken as `on`",
         R + "test_silent_acceptance.py::test_feature_cache_on_and_off_read_by_yaml_as_booleans_are_accepted[on]"),
    Case(CONFIG, "a boolean for a choice without on/off words", "refused, naming the YAML rule",
         R + "test_silent_acceptance.py::test_a_boolean_for_a_choice_without_on_off_words_still_names_the_yaml_rule"),
    Case(CONFIG, "`--print-config` with `model.vision.widht=3`", "exit 2 naming the key, \"Did you mean 'width'?\" "
         "(was: printed)", R + "test_silent_acceptance.py::test_print_config_validates_nested_sections_first[vision]"),
    Case(CONFIG, "`--print-config` with a processor key typo", "the same",
         R + "test_silent_acceptance.py::test_print_config_validates_nested_sections_first[processor]"),
    Case(CONFIG, "`run.val_every_n_epochs=0`", "exit 2 naming the key and the range (was: ZeroDivisionError after "
         "an epoch)", R + "test_run_folder.py::test_values_that_reached_torch_are_refused_where_the_config_is_read"
         "[val_every_n_epochs_0]"),
    Case(CONFIG, "`run.init_lr=nan`", "the same (was: torch's ValueError)",
         R + "test_run_folder.py::test_values_that_reached_torch_are_refused_where_the_config_is_read[init_lr_nan]"),
    Case(CONFIG, "`run.init_lr` negative", "the same",
         R + "test_run_folder.py::test_values_that_reached_torch_are_refused_where_the_config_is_read[init_lr_negative]"),
    Case(CONFIG, "`run.batch_size_train=1e20`", "the same (was: islice's ValueError)",
         R + "test_run_folder.py::test_values_that_reached_torch_are_refused_where_the_config_is_read[batch_size_1e20]"),
    Case(CONFIG, "`run.generation.num_beams=-3`", "the same",
         R + "test_run_folder.py::test_values_that_reached_torch_are_refused_where_the_config_is_read[num_beams_negative]"),
    Case(CONFIG, "`run.max_grad_norm=inf`", "the same",
         R + "test_run_folder.py::test_values_that_reached_torch_are_refused_where_the_config_is_read[max_grad_norm_inf]"),
    Case(CONFIG, "`runner_iter` ending mid-pass over data with unreadable samples", "the skipped samples are "
         "reported (was: never)", R + "test_silent_acceptance.py::test_runner_iter_reports_skipped_samples_when_it_ends_mid_pass"),
    # ---- second round (issue 27): the commands beside training -------------------------------------
    Case(HANG, "a FIFO as `train.py --cfg-path`", FIFO, NO_HANG_T + "test_a_fifo_given_as_a_file_is_refused_at_once[train-run.yaml]"),
    Case(HANG, "a FIFO as `lavis.doctor --cfg-path`", "a FAIL line at once (was: blocked forever)",
         NO_HANG_T + "test_a_fifo_given_as_a_file_is_refused_at_once[doctor-run.yaml]"),
    Case(HANG, "a FIFO as the answer file of `lavis.metrics.vqa --pred`", FIFO,
         NO_HANG_T + "test_a_fifo_given_as_a_file_is_refused_at_once[metrics_predictions-answers.jsonl]"),
    Case(HANG, "a FIFO as the ground truth of `lavis.metrics.vqa --gt`", FIFO,
         NO_HANG_T + "test_a_fifo_given_as_a_file_is_refused_at_once[metrics_ground_truth-quiltvqa_test_w_ans.json]"),
    Case(HANG, "a FIFO as `lavis.chat --image`", FIFO, NO_HANG_T + "test_a_fifo_given_as_a_file_is_refused_at_once[chat_image-tile.png]"),
    Case(HANG, "a FIFO as `lavis.slides --slide`", FIFO, NO_HANG_T + "test_a_fifo_given_as_a_file_is_refused_at_once[slides_slide-case1.svs]"),
    Case(HANG, "a FIFO as `lavis.predict --questions`", "refused naming the FIFO (was: \"no such file\")",
         NO_HANG_T + "test_a_fifo_given_as_a_file_is_refused_at_once[predict_questions-quiltvqa_test_wo_ans.jsonl]"),
    Case(HANG, "`lavis.datasets.download` against an endpoint that accepts and never answers", "what it waits for is printed "
         "at once; after `--timeout` (60 s) one line naming the endpoint, exit 2 (was: nothing printed for minutes)",
         NO_HANG_T + "test_a_download_from_an_endpoint_that_never_answers_gives_up_and_says_so"),
    Case(DOCTOR, "a `.safetensors` checkpoint cut short, its header intact", "FAIL: not a valid safetensors file, "
         "file not fully covered (was: PASS)", DOCTOR_T + "test_a_checkpoint_the_run_would_refuse_fails_the_doctor[truncated_safetensors]"),
    Case(DOCTOR, "a `.pth` checkpoint that runs code when unpickled", "FAIL: holds Python objects besides tensors; "
         "nothing runs (was: PASS)", DOCTOR_T + "test_a_checkpoint_the_run_would_refuse_fails_the_doctor[malicious_pth]"),
    Case(DOCTOR, "a truncated `model.vision.pretrained` (`.pth`)", "FAIL: the file is truncated (was: PASS)",
         DOCTOR_T + "test_a_truncated_image_encoder_file_fails_the_doctor"),
    Case(DOCTOR, "`lavis.doctor --json` naming a directory", "exit 2 before any check (was: a traceback after all of them)",
         DOCTOR_T + "test_json_naming_a_directory_is_refused_before_the_checks"),
    Case(VALUES, "`lavis.predict --generation num_beams=-2`", "exit 2 naming the key and range, before the model "
         "loads (was: answered)", VALUES_T + "test_a_negative_beam_count_is_refused[predict]"),
    Case(VALUES, "`lavis.chat --generation num_beams=-2`", "the same", VALUES_T + "test_a_negative_beam_count_is_refused[chat]"),
    Case(VALUES, "`lavis.chat --generation use_nucleus_sampling=true temperature=-5`", "exit 2: must be > 0 with "
         "sampling (was: answered)", VALUES_T + "test_a_negative_sampling_temperature_is_refused"),
    Case(VALUES, "`lavis.chat --generation max_new_tokens=100000000`", "exit 2: at most what the model's LLM holds "
         "(512 for T5, the position table less the prompt for decoder-only) (was: killed for memory, 16.7 GB)",
         VALUES_T + "test_more_new_tokens_than_the_model_holds_is_refused_before_generating"),
    Case(VALUES, "`lavis.slides --tile 0`", "exit 2: at least 8 pixels (was: 64 used silently)",
         VALUES_T + "test_a_zero_tile_is_refused_not_replaced"),
    Case(VALUES, "`lavis.serve --port -5`", "exit 2: a port from 1 to 65535 (was: a traceback)",
         VALUES_T + "test_a_negative_port_is_refused"),
    Case(VALUES, "`lavis.datasets.check --workers -3`", "exit 2: must be >= 0 (was: a traceback)",
         VALUES_T + "test_a_negative_worker_count_is_refused"),
    Case(PATHS, "`..` in a question file's image path (`lavis.predict`)", "exit 2, the builders' rule: file, line "
         "and path (was: the file read and answered)", PATHS_T + "test_predict_refuses_question_images_outside_the_data_folder[parent_parts]"),
    Case(PATHS, "an absolute image path outside the data folder (`lavis.predict`)", "the same",
         PATHS_T + "test_predict_refuses_question_images_outside_the_data_folder[absolute]"),
    Case(PATHS, "a Hub file list naming `data/train-/../../../../x.parquet`", "the whole list refused, nothing "
         "fetched or written (was: written outside `--root`)",
         PATHS_T + "test_a_hub_file_list_naming_a_path_outside_the_root_is_refused"),
    Case(PATHS, "`lavis.datasets.download --token hf_...`", "`--token ***` in `<root>/.lock`, after a SIGKILL too and in "
         "another user's \"in use\" message (was: the token verbatim)",
         PATHS_T + "test_a_token_on_the_command_line_is_never_written_to_the_lock"),
    Case(OUTPUTS, "`lavis.predict --out` naming a directory", "exit 2 before the model loads (was: a traceback)",
         OUTPUTS_T + "test_predict_out_naming_a_directory_is_refused_before_the_model_loads"),
    Case(OUTPUTS, "`convert --out` naming an existing file", "exit 1, the file untouched (was: a traceback)",
         OUTPUTS_T + "test_convert_out_naming_an_existing_file_is_refused"),
    Case(OUTPUTS, "`lavis.slides --out` on a read-only file system", "exit 2 before the model loads (was: a traceback)",
         OUTPUTS_T + "test_slides_into_a_read_only_folder_fail_before_the_model_loads"),
    Case(OUTPUTS, "`lavis.datasets.check` with a read-only data folder", "exit 2 before any image is decoded "
         "(was: a traceback after all of them)", OUTPUTS_T + "test_check_into_a_read_only_folder_fails_before_decoding"),
    Case(OUTPUTS, "`convert --out` on a read-only file system", "exit 1 before the model loads (was: a traceback)",
         OUTPUTS_T + "test_convert_into_a_read_only_folder_fails_before_the_model_loads"),
    Case(OUTPUTS, "the disk fills up while `convert` writes", "one line; no `--out` and no temporary folder left "
         "(was: a traceback and a half-written folder)", OUTPUTS_T + "test_convert_on_a_full_disk_is_one_line_and_leaves_no_folder"),
    Case(OUTPUTS, "the disk fills up while `lavis.slides` writes", "one line naming the file; finished batches kept, "
         "the lock released for the rerun (was: a traceback)", OUTPUTS_T + "test_slides_on_a_full_disk_are_one_line"),
    Case(OUTPUTS, "the disk fills up while `lavis.datasets.check` writes `check.json`", "one line naming it, no "
         "partial file (was: a traceback)", OUTPUTS_T + "test_check_on_a_full_disk_is_one_line_and_writes_no_partial_report"),
    Case(OUTPUTS, "`convert` under umask 022", "every file 0644 (was: `model.safetensors` 0600, the rest 0644)",
         OUTPUTS_T + "test_convert_writes_every_file_with_the_umask_mode[umask022]"),
    Case(OUTPUTS, "`convert` under umask 077", "every file 0600", OUTPUTS_T + "test_convert_writes_every_file_with_the_umask_mode[umask077]"),
    Case(TEXT, "a Latin-1 line typed into the interactive `lavis.chat`", "one line naming the byte and its offset; "
         "the conversation goes on (was: a traceback, the conversation lost)",
         TEXT_T + "test_a_latin1_line_in_the_interactive_chat_keeps_the_conversation"),
    Case(TEXT, "a Latin-1 `lavis.chat --question`", "exit 2, the same line", TEXT_T + "test_a_latin1_question_on_the_command_line_is_one_line"),
    Case(INSTRUCTIONS, "`generate_instructions.py` where every caption failed", "exit 1: no instructions, failures by "
         "reason (was: exit 0, \"0 instructions\")", INSTRUCTIONS_T + "test_a_run_in_which_every_caption_failed_exits_1"),
    Case(INSTRUCTIONS, "more than `--max-failed-share` (0.5) of the captions failed", "exit 1 naming the share and "
         "reasons (was: exit 0)", INSTRUCTIONS_T + "test_a_run_in_which_most_captions_failed_exits_1"),
]
