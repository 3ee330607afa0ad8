"""The project's tools: the notebook runner, the GPU check, bench and kit, the docs build."""
