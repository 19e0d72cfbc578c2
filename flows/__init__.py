"""The Prefect project's entrypoints (prefect.yaml): thin modules over `abflow.flows`.

The flows ship in the wheel as `abflow.flows`; these files keep the `flows/<name>.py:<flow>`
entrypoints of a checkout working. Importing the package installs abflow's log redaction.
"""

import abflow.flows  # noqa: F401
