"""Run in a subprocess by test_spark_connect.py: abflow through a Spark Connect client.

Starts pyspark's local Spark Connect server (`SparkSession.builder.remote("local[2]")`, port
15002), then analyses one experiment through abflow's `sc://` path and prints the sufficient
statistics and exposure summary as JSON.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict
from datetime import datetime

os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")


def main() -> None:
    key, as_of, assignments, events, definitions = sys.argv[1:6]
    from pyspark.sql import SparkSession

    # pyspark's local server listens on its default port, 15002
    SparkSession.builder.remote("local[2]").getOrCreate()
    port = 15002
    from abflow.definitions import load_experiment_files
    from abflow.warehouse import extract
    from abflow.warehouse.dialects import Source
    from abflow.warehouse.engines import SparkWarehouse

    experiment = {
        e.key: e for e in load_experiment_files([__import__("pathlib").Path(definitions)])
    }[key]
    warehouse = SparkWarehouse.from_url(f"sc://127.0.0.1:{port}")
    sources = {"assignments": Source.parse(assignments), "events": Source.parse(events)}
    with warehouse.session() as executor:
        stats, exposure = extract.analyse_in_warehouse(
            executor, experiment, datetime.fromisoformat(as_of), sources
        )
    print(
        json.dumps(
            {
                "client": type(warehouse.spark).__module__,
                "stats": [asdict(s) for s in stats],
                "exposure": asdict(exposure) if exposure else None,
            },
            default=str,
        )
    )


if __name__ == "__main__":
    main()
