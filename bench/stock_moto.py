"""Stock moto 5.2.5 (no patches from local/): run the five-Pass-state machine N times, print JSON figures.

Runs in its own process so that none of the runtime's hooks are installed. Stock moto has no
StartSyncExecution, so each execution is StartExecution + polling DescribeExecution (1 ms) in-process.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import boto3
from moto import mock_aws

from bench.stats import figures

DEFINITION = (Path(__file__).parent / "fixture" / "statemachines" / "five_passes.asl.json").read_text()


def main(count: int) -> None:
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
        sfn = boto3.client("stepfunctions", region_name="us-east-1")
        arn = sfn.create_state_machine(
            name="five-passes", definition=DEFINITION, roleArn="arn:aws:iam::123456789012:role/bench"
        )["stateMachineArn"]
        samples: list[float] = []
        start = time.perf_counter()
        for i in range(count):
            t0 = time.perf_counter()
            ex = sfn.start_execution(stateMachineArn=arn, name=f"e{i}", input="{}")["executionArn"]
            while sfn.describe_execution(executionArn=ex)["status"] == "RUNNING":
                time.sleep(0.001)
            samples.append(time.perf_counter() - t0)
        wall = time.perf_counter() - start
    f = figures("stock moto engine, 5 Pass states (start + poll)", samples, wall)
    print(json.dumps(f.__dict__))


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 200)
