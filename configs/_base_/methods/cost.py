# CostHook: count FLOPs, time and energy per epoch into <work_dir>/cost.json (and the logs).
custom_hooks = [dict(type='CostHook')]
