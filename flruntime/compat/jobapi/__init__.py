"""NVFlare's Python job API and recipes without NVFlare: ``FedJob``, ``ScriptRunner``, ``FedAvgJob``, recipes.

A script written for NVFlare builds a job from component objects (``job.to(IntimeModelSelector(...),
"server")``), exports it (``job.export_job(root)``) or runs it (``job.simulator_run(ws)``,
``recipe.execute(SimEnv(...))``). The shim (:mod:`flruntime.compat`) maps NVFlare's module names onto these
modules; the objects the script makes are flruntime's components, written to the job folder under NVFlare's
class paths, so the exported folder is an ordinary job folder that ``flruntime validate`` checks and NVFlare
would load.

- :mod:`~flruntime.compat.jobapi.export`: an object → its ``{"path", "args"}`` entry, the user code it needs
  in ``custom/``, and the job folder on disk.
- :mod:`~flruntime.compat.jobapi.fed_job`: ``FedJob`` (``nvflare.job_config.api``).
- :mod:`~flruntime.compat.jobapi.script_runner`: ``ScriptRunner`` (``nvflare.job_config.script_runner``).
- :mod:`~flruntime.compat.jobapi.pt`: ``PTModel``, ``BaseFedJob``, ``FedAvgJob`` (``nvflare.app_opt.pt.job_config``).
- :mod:`~flruntime.compat.jobapi.recipes`: ``Recipe``, the PyTorch and NumPy recipes, ``add_experiment_tracking``,
  ``add_cross_site_evaluation`` (``nvflare.recipe``); the environments are :mod:`flruntime.environments`'.
"""
