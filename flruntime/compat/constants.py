"""NVFlare's constant classes, with NVFlare's values, for code written against ``nvflare.apis`` / ``app_common``.

Plain classes of string attributes, as NVFlare has them (code compares with ``==`` and uses them as dict keys).
Only names that NVFlare's documented component API and its examples use are here; the values are NVFlare's so
that a header or property set by ported code means the same thing to flruntime's engines.
"""

from __future__ import annotations


class ReturnCode:
    """How a task (or a request) ended: a reply's ``__rc__`` header."""

    OK = "OK"
    BAD_PEER_CONTEXT = "BAD_PEER_CONTEXT"
    BAD_REQUEST_DATA = "BAD_REQUEST_DATA"
    BAD_TASK_DATA = "BAD_TASK_DATA"
    COMMUNICATION_ERROR = "COMMUNICATION_ERROR"
    TIMEOUT = "TIMEOUT"
    ERROR = "ERROR"
    EXECUTION_EXCEPTION = "EXECUTION_EXCEPTION"
    EXECUTION_RESULT_ERROR = "EXECUTION_RESULT_ERROR"
    HANDLER_EXCEPTION = "HANDLER_EXCEPTION"
    MISSING_PEER_CONTEXT = "MISSING_PEER_CONTEXT"
    RUN_MISMATCH = "RUN_MISMATCH"
    TASK_ABORTED = "TASK_ABORTED"
    TASK_DATA_FILTER_ERROR = "TASK_DATA_FILTER_ERROR"
    TASK_RESULT_FILTER_ERROR = "TASK_RESULT_FILTER_ERROR"
    TASK_UNKNOWN = "TASK_UNKNOWN"
    TASK_UNSUPPORTED = "TASK_UNSUPPORTED"
    TOPIC_UNKNOWN = "TOPIC_UNKNOWN"
    MODEL_UNRECOGNIZED = "MODEL_UNRECOGNIZED"
    VALIDATE_TYPE_UNKNOWN = "VALIDATE_TYPE_UNKNOWN"
    EMPTY_RESULT = "EMPTY_RESULT"
    UNSAFE_JOB = "UNSAFE_JOB"
    EARLY_TERMINATION = "EARLY_TERMINATION"
    SERVER_NOT_READY = "SERVER_NOT_READY"
    SERVICE_UNAVAILABLE = "SERVICE_UNAVAILABLE"


class ReservedKey:
    """Keys of FLContext properties and Shareable headers that the framework sets."""

    MANAGER = "__manager__"
    ENGINE = "__engine__"
    RUN_NUM = "__run_num__"
    IDENTITY_NAME = "__identity_name__"
    PEER_CTX = "__peer_ctx__"
    RC = "__rc__"
    COOKIE_JAR = "__cookie_jar__"
    WORKSPACE_ROOT = "__workspace_root__"
    APP_ROOT = "__app_root__"
    CLIENT_NAME = "__client_name__"
    CLIENT_TYPE = "__client_type__"
    TASK_NAME = "__task_name__"
    TASK_DATA = "__task_data__"
    TASK_RESULT = "__task_result__"
    TASK_ID = "__task_id__"
    EVENT_ID = "__event_id__"
    IS_RESEND = "__is_resend__"
    RUNNER = "__runner__"
    WORKFLOW = "__workflow__"
    REPLY = "__reply__"
    EVENT_ORIGIN = "__event_origin__"
    EVENT_ORIGIN_SITE = "__event_origin_site__"
    EVENT_DATA = "__event_data__"
    EVENT_SCOPE = "__event_scope__"
    RUN_ABORT_SIGNAL = "__run_abort_signal__"
    SHAREABLE = "__shareable__"
    ARGS = "__args__"
    WORKSPACE_OBJECT = "__workspace_object__"
    SECURE_MODE = "__secure_mode__"
    SIMULATE_MODE = "__simulate_mode__"
    JOB_INFO = "__job_info__"
    JOB_META = "__job_meta__"
    CURRENT_JOB_ID = "__current_job_id__"
    FATAL_SYSTEM_ERROR = "__fatal_system_error__"
    CUSTOM_PROPS = "__custom_props__"
    EXCEPTIONS = "__exceptions__"


class FLContextKey:
    """Keys of FLContext properties."""

    TASK_NAME = ReservedKey.TASK_NAME
    TASK_DATA = ReservedKey.TASK_DATA
    TASK_RESULT = ReservedKey.TASK_RESULT
    TASK_ID = ReservedKey.TASK_ID
    EVENT_ID = ReservedKey.EVENT_ID
    EVENT_ORIGIN = ReservedKey.EVENT_ORIGIN
    EVENT_ORIGIN_SITE = ReservedKey.EVENT_ORIGIN_SITE
    EVENT_DATA = ReservedKey.EVENT_DATA
    EVENT_SCOPE = ReservedKey.EVENT_SCOPE
    EXCEPTIONS = ReservedKey.EXCEPTIONS
    CLIENT_NAME = ReservedKey.CLIENT_NAME
    CLIENT_TYPE = ReservedKey.CLIENT_TYPE
    WORKSPACE_ROOT = ReservedKey.WORKSPACE_ROOT
    CURRENT_RUN = ReservedKey.RUN_NUM
    APP_ROOT = ReservedKey.APP_ROOT
    PEER_CONTEXT = ReservedKey.PEER_CTX
    IS_CLIENT_TASK_RESEND = ReservedKey.IS_RESEND
    RUNNER = ReservedKey.RUNNER
    WORKFLOW = ReservedKey.WORKFLOW
    SHAREABLE = ReservedKey.SHAREABLE
    RUN_ABORT_SIGNAL = ReservedKey.RUN_ABORT_SIGNAL
    ARGS = ReservedKey.ARGS
    REPLY = ReservedKey.REPLY
    WORKSPACE_OBJECT = ReservedKey.WORKSPACE_OBJECT
    SECURE_MODE = ReservedKey.SECURE_MODE
    SIMULATE_MODE = ReservedKey.SIMULATE_MODE
    JOB_INFO = ReservedKey.JOB_INFO
    JOB_META = ReservedKey.JOB_META
    CURRENT_JOB_ID = ReservedKey.CURRENT_JOB_ID
    CUSTOM_PROPS = ReservedKey.CUSTOM_PROPS
    FATAL_SYSTEM_ERROR = ReservedKey.FATAL_SYSTEM_ERROR
    NOT_READY_TO_END_RUN = "not_ready_to_end_run__"
    FILTER_DIRECTION = "__filter_dir__"


class FLMetaKey:
    """Keys of a model's meta (an FLModel's or a DXO's)."""

    NUM_STEPS_CURRENT_ROUND = "NUM_STEPS_CURRENT_ROUND"
    PROCESSED_ALGORITHM = "PROCESSED_ALGORITHM"
    PROCESSED_KEYS = "PROCESSED_KEYS"
    INITIAL_METRICS = "initial_metrics"
    FILTER_HISTORY = "filter_history"
    CONFIGS = "configs"
    VALIDATE_TYPE = "validate_type"
    START_ROUND = "start_round"
    CURRENT_ROUND = "current_round"
    TOTAL_ROUNDS = "total_rounds"
    JOB_ID = "job_id"
    SITE_NAME = "site_name"


class ReservedHeaderKey:
    """Keys of a Shareable's headers that the framework sets."""

    HEADERS = "__headers__"
    TOPIC = "__topic__"
    RC = ReservedKey.RC
    COOKIE_JAR = ReservedKey.COOKIE_JAR
    PEER_PROPS = "__peerProps__"
    REPLY_IS_LATE = "__isLate__"
    TASK_NAME = ReservedKey.TASK_NAME
    TASK_ID = ReservedKey.TASK_ID
    WORKFLOW = ReservedKey.WORKFLOW
    AUDIT_EVENT_ID = "__audit_event_id__"
    CONTENT_TYPE = "__content_type__"
    TASK_OPERATOR = "__task_operator__"
    ERROR = "__error__"
    MSG_ROOT_ID = "__msg_root_id__"
    MSG_ROOT_TTL = "__msg_root_ttl__"


class EventScope:
    """Where an event goes: this site only, or the federation."""

    FEDERATION = "federation"
    LOCAL = "local"


class EventType:
    """NVFlare's system events (flruntime's engines fire them at NVFlare's moments)."""

    START_RUN = "_start_run"
    END_RUN = "_end_run"
    ABOUT_TO_START_RUN = "_about_to_start_run"
    ABOUT_TO_END_RUN = "_about_to_end_run"
    SWAP_IN = "_swap_in"
    SWAP_OUT = "_swap_out"
    START_WORKFLOW = "_start_workflow"
    END_WORKFLOW = "_end_workflow"
    ABORT_TASK = "_abort_task"
    FATAL_SYSTEM_ERROR = "_fatal_system_error"
    FATAL_TASK_ERROR = "_fatal_task_error"
    JOB_DEPLOYED = "_job_deployed"
    JOB_STARTED = "_job_started"
    JOB_COMPLETED = "_job_completed"
    JOB_ABORTED = "_job_aborted"
    JOB_CANCELLED = "_job_cancelled"
    BEFORE_PULL_TASK = "_before_pull_task"
    AFTER_PULL_TASK = "_after_pull_task"
    BEFORE_PROCESS_SUBMISSION = "_before_process_submission"
    AFTER_PROCESS_SUBMISSION = "_after_process_submission"
    BEFORE_TASK_DATA_FILTER = "_before_task_data_filter"
    AFTER_TASK_DATA_FILTER = "_after_task_data_filter"
    BEFORE_TASK_RESULT_FILTER = "_before_task_result_filter"
    AFTER_TASK_RESULT_FILTER = "_after_task_result_filter"
    BEFORE_TASK_EXECUTION = "_before_task_execution"
    AFTER_TASK_EXECUTION = "_after_task_execution"
    BEFORE_SEND_TASK_RESULT = "_before_send_task_result"
    AFTER_SEND_TASK_RESULT = "_after_send_task_result"
    CRITICAL_LOG_AVAILABLE = "_critical_log_available"
    ERROR_LOG_AVAILABLE = "_error_log_available"
    EXCEPTION_LOG_AVAILABLE = "_exception_log_available"
    WARNING_LOG_AVAILABLE = "_warning_log_available"
    INFO_LOG_AVAILABLE = "_info_log_available"
    DEBUG_LOG_AVAILABLE = "_debug_log_available"
    PRE_RUN_RESULT_AVAILABLE = "_pre_run_result_available"
    SYSTEM_START = "_system_start"
    SYSTEM_END = "_system_end"
    BEFORE_CHECK_CLIENT_RESOURCES = "_before_check_client_resources"
    AFTER_CHECK_CLIENT_RESOURCES = "_after_check_client_resources"
    SUBMIT_JOB = "_submit_job"
    DEPLOY_JOB_TO_SERVER = "_deploy_job_to_server"
    DEPLOY_JOB_TO_CLIENT = "_deploy_job_to_client"
    BEFORE_CHECK_RESOURCE_MANAGER = "_before_check_resource_manager"
    BEFORE_SEND_ADMIN_COMMAND = "_before_send_admin_command"
    BEFORE_CLIENT_REGISTER = "_before_client_register"
    AFTER_CLIENT_REGISTER = "_after_client_register"
    CLIENT_REGISTERED = "_client_registered"
    SYSTEM_BOOTSTRAP = "_system_bootstrap"
    BEFORE_AGGREGATION = "_before_aggregation"
    AFTER_AGGREGATION = "_after_aggregation"
    CLIENT_DISCONNECTED = "_client_disconnected"
    CLIENT_RECONNECTED = "_client_reconnected"
    AUTHORIZE_COMMAND_CHECK = "_authorize_command_check"


class AppEventType:
    """NVFlare's application events (``nvflare.app_common.app_event_type``)."""

    ROUND_STARTED = "_round_started"
    ROUND_DONE = "_round_done"
    INITIAL_MODEL_LOADED = "_initial_model_loaded"
    BEFORE_AGGREGATION = "_before_aggregation"
    END_AGGREGATION = "_end_aggregation"
    SUBMIT_LOCAL_BEST_MODEL = "_submit_local_best_model"
    SERVER_RECEIVE_BEST_MODEL = "_server_receive_best_model"
    RECEIVE_VALIDATION_MODEL = "_receive_validation_model"
    SEND_VALIDATION_RESULTS = "_send_validation_results"
    RECEIVE_VALIDATION_RESULTS = "_receive_validation_results"
    BEFORE_INITIALIZE = "_before_initialize"
    AFTER_INITIALIZE = "_after_initialize"
    BEFORE_TRAIN = "_before_train"
    AFTER_TRAIN = "_after_train"
    BEFORE_SHAREABLE_TO_LEARNABLE = "_before_model_update"
    AFTER_SHAREABLE_TO_LEARNABLE = "_after_model_update"
    BEFORE_LEARNABLE_PERSIST = "_before_save_model"
    AFTER_LEARNABLE_PERSIST = "_after_save_model"
    BEFORE_SEND_BEST_MODEL = "_before_send_best_model"
    AFTER_SEND_BEST_MODEL = "_after_send_best_model"
    LOCAL_BEST_MODEL_AVAILABLE = "_local_best_model_available"
    GLOBAL_BEST_MODEL_AVAILABLE = "_global_best_model_available"
    BEFORE_GET_VALIDATION_MODELS = "_before_get_validation_models"
    AFTER_GET_VALIDATION_MODELS = "_after_get_validation_models"
    SEND_MODEL_FOR_VALIDATION = "_send_model_for_validation"
    BEFORE_VALIDATE_MODEL = "_before_validate_model"
    AFTER_VALIDATE_MODEL = "_after_validate_model"
    BEFORE_SUBMIT_VALIDATION_RESULTS = "_before_submit_validation_results"
    AFTER_SUBMIT_VALIDATION_RESULTS = "_after_submit_validation_results"
    BEFORE_TRAIN_TASK = "_before_train_task"
    TRAIN_DONE = "_train_done"
    TRAINING_STARTED = "_training_started"
    TRAINING_FINISHED = "_training_finished"
    BEFORE_CONTRIBUTION_ACCEPT = "_before_contribution_accept"
    AFTER_CONTRIBUTION_ACCEPT = "_after_contribution_accept"
    VALIDATION_RESULT_RECEIVED = "_validation_result_received"


class AppConstants:
    """Names shared by NVFlare's application components: task names, FLContext properties, headers."""

    CONFIG_PATH = "config_path"
    MODEL_NETWORK = "model_network"
    MULTI_GPU = "multi_gpu"
    TRAIN_CONTEXT = "train_context"
    DEVICE = "device"
    MODEL_NAME = "model_name"
    MODEL_URL = "model_url"
    START_ROUND = "start_round"
    CURRENT_ROUND = "current_round"
    CONTRIBUTION_ROUND = "contribution_round"
    NUM_ROUNDS = "num_rounds"
    WAIT_AFTER_MIN_CLIENTS = "wait_after_min_clients"
    NUM_TOTAL_STEPS = "num_total_steps"
    NUM_EPOCHS_CURRENT_ROUND = "num_epochs_current_round"
    NUM_TOTAL_EPOCHS = "num_total_epochs"
    LOCAL_EPOCHS = "local_epochs"
    IS_FIRST_ROUND = "is_first_round"
    MY_RANK = "my_rank"
    INITIAL_LEARNING_RATE = "initial_learning_rate"
    CURRENT_LEARNING_RATE = "current_learning_rate"
    NUMBER_OF_GPUS = "number_of_gpus"
    META_COOKIE = "cookie"
    META_DATA = "meta_data"
    GLOBAL_MODEL = "global_model"
    IS_BEST = "is_global_best"
    FAILURE = "failure"
    LOG_DIR = "model_log_dir"
    CKPT_PRELOAD_PATH = "ckpt_preload_path"
    DXO = "DXO"
    PHASE = "_phase_"
    PHASE_INIT = "_init_"
    PHASE_TRAIN = "train"
    PHASE_PREDICT = "prediction"
    PHASE_FINISHED = "_finished_"
    STATUS_WAIT = "_wait_"
    STATUS_DONE = "_done_"
    STATUS_TRAINING = "_training_"
    STATUS_IN_VALIDATION = "_in_validation_"
    REPLY = "_reply_"
    TASK_TRAIN = "train"
    TASK_END_RUN = "_end_run_"
    TASK_VALIDATION = "validate"
    TASK_GET_WEIGHTS = "get_weights"
    TASK_SUBMIT_MODEL = "submit_model"
    TASK_CONFIGURE = "configure"
    DEFAULT_AGGREGATOR_ID = "aggregator"
    DEFAULT_PERSISTOR_ID = "persistor"
    DEFAULT_SHAREABLE_GENERATOR_ID = "shareable_generator"
    SUBMIT_MODEL_FAILURE_REASON = "submit_model_failure_reason"
    CROSS_VAL_DIR = "cross_site_val"
    CROSS_VAL_MODEL_DIR_NAME = "model_shareables"
    CROSS_VAL_RESULTS_DIR_NAME = "result_shareables"
    CROSS_VAL_MODEL_PATH = "_cross_val_model_path_"
    CROSS_VAL_RESULTS_PATH = "_cross_val_results_path_"
    RECEIVED_MODEL = "_receive_model_"
    RECEIVED_MODEL_OWNER = "_receive_model_owner_"
    MODEL_TO_VALIDATE = "_model_to_validate_"
    DATA_CLIENT = "_data_client_"
    VALIDATION_RESULT = "_validation_result_"
    CROSS_VAL_SERVER_MODEL = "_cross_val_server_model_"
    CROSS_VAL_CLIENT_MODEL = "_cross_val_client_model_"
    CROSS_VAL_MODEL_NAME = "_cross_val_model_name_"
    MODEL_OWNER = "_model_owner_"
    PARTICIPATING_CLIENTS = "_particpating_clients_"
    MODEL_TO_VALIDATE_KEY = "_model_to_validate_key_"
    DEFAULT_MODEL_DIR = "models"
    ENCRYPTED_DATA = "_encrypted_data_"
    DEFAULT_FORMATTER_ID = "formatter"
    VALIDATE_TYPE = "_validate_type"
    LAST_ROUND = "last_round"
    BEFORE_TRAIN_VALIDATE = "before_train_validate"
    MODEL_SAVE_PATH = "model_save_path"
    SUBMIT_MODEL_NAME = "submit_model_name"
    CLIENT_NAME = "client_name"


class ModelName:
    """Model names of a trainer's ``submit_model`` task."""

    BEST_MODEL = "best_model"


class ValidateType:
    """Why a model is validated."""

    BEFORE_TRAIN_VALIDATE = "before_train_validate"
    MODEL_VALIDATE = "model_validate"


class DefaultCheckpointFileName:
    """File names NVFlare's persistors write by default."""

    GLOBAL_MODEL = "FL_global_model.pt"
    BEST_GLOBAL_MODEL = "best_FL_global_model.pt"


class NPConstants:
    """Names of NVFlare's numpy example components (``nvflare.app_common.np.constants``)."""

    MODEL_DIR = "model_dir"
    MODEL_NAME = "model_name"
    MODEL_FILE = "model_file"
    DEFAULT_MODEL_DIR = "models"
    DEFAULT_MODEL_NAME = "server.npy"
    DEFAULT_VALIDATE_NAME = "validate"
    SERVER_MODEL_NAME = "server"
    TASK_GET_WEIGHTS = "get_weights"
    TASK_SUBMIT_MODEL = "submit_model"
    TASK_TRAIN = "train"
    TASK_VALIDATE = "validate"
    EXCEPTION_MODEL_NAME = "exception_model"
    VALIDATION_RESULT = "validation_result"
    NUMPY_KEY = "numpy_key"
