"""``nvflare.job_config.script_runner`` without NVFlare: ScriptRunner (flruntime's).

See :mod:`flruntime.compat.jobapi.script_runner`.
"""

from flruntime.compat.jobapi.script_runner import BaseScriptRunner, FrameworkType, PipeConnectType, ScriptRunner

__all__ = ["BaseScriptRunner", "FrameworkType", "PipeConnectType", "ScriptRunner"]
