"""Collection rules for the whole tree: modules of optional extras are skipped when the extra is absent."""

import importlib.util

#: workflows/torchsim.py needs the optional extra ``equicalc[torchsim]`` (its doctest imports it)
collect_ignore = [] if importlib.util.find_spec("torch_sim") else ["workflows/torchsim.py"]
