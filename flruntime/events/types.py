"""Event names. Values match NVFlare's where NVFlare has the same event, so ported code reads alike."""

from __future__ import annotations

from enum import StrEnum

#: Prefix of events forwarded between sites (``fed.analytix_log_stats``).
FED_PREFIX = "fed."


class EventType(StrEnum):
    """Events fired by the engines and the built-in components."""

    START_RUN = "_start_run"
    END_RUN = "_end_run"
    ABOUT_TO_END_RUN = "_about_to_end_run"
    ABORT_TASK = "_abort_task"
    INITIAL_MODEL_LOADED = "_initial_model_loaded"
    ROUND_STARTED = "_round_started"
    BEFORE_CONTRIBUTION_ACCEPT = "_before_contribution_accept"
    AFTER_CONTRIBUTION_ACCEPT = "_after_contribution_accept"
    BEFORE_AGGREGATION = "_before_aggregation"
    AFTER_AGGREGATION = "_after_aggregation"
    ROUND_DONE = "_round_done"
    GLOBAL_BEST_MODEL_AVAILABLE = "_global_best_model_available"
    VALIDATION_RESULT_RECEIVED = "_validation_result_received"
    BEFORE_TASK_EXECUTION = "_before_task_execution"
    AFTER_TASK_EXECUTION = "_after_task_execution"
    ANALYTIX_LOG_STATS = "analytix_log_stats"
    FED_ANALYTIX_LOG_STATS = "fed.analytix_log_stats"
