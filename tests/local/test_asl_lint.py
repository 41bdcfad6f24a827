import copy
import json
from pathlib import Path
from typing import Any

import pytest

from local.asl_lint import lint_definition, lint_stack
from local.template_loader import load_stack

TEMPLATES = Path(__file__).parent / "fixtures" / "templates"

GOOD: dict = {
    "StartAt": "Charge",
    "States": {
        "Charge": {
            "Type": "Task",
            "Resource": "arn:aws:states:::lambda:invoke",
            "Parameters": {"FunctionName": "charge", "Payload.$": "$"},
            "Retry": [
                {
                    "ErrorEquals": ["Lambda.TooManyRequestsException"],
                    "IntervalSeconds": 2,
                    "BackoffRate": 2.0,
                    "MaxAttempts": 3,
                    "MaxDelaySeconds": 10,
                    "JitterStrategy": "FULL",
                },
                {"ErrorEquals": ["States.ALL"]},
            ],
            "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "Failed"}],
            "Next": "Route",
        },
        "Route": {
            "Type": "Choice",
            "Choices": [{"Variable": "$.ok", "BooleanEquals": True, "Next": "Fan"}],
            "Default": "Failed",
        },
        "Fan": {
            "Type": "Parallel",
            "Branches": [{"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}}],
            "Next": "Each",
        },
        "Each": {
            "Type": "Map",
            "ItemProcessor": {"StartAt": "I", "States": {"I": {"Type": "Pass", "End": True}}},
            "Next": "Done",
        },
        "Done": {"Type": "Succeed"},
        "Failed": {"Type": "Fail", "Error": "Payment", "Cause": "failed"},
    },
}


def mutated(**changes) -> dict:
    definition = copy.deepcopy(GOOD)
    for dotted, value in changes.items():
        target = definition
        *parents, last = dotted.split("__")
        for key in parents:
            target = target[int(key)] if isinstance(target, list) else target[key]
        if value is None:
            del target[last]
        else:
            target[last] = value
    return definition


def test_clean_definition_has_no_problems_as_text_or_dict():
    assert lint_definition(GOOD) == []
    assert lint_definition(json.dumps(GOOD)) == []


def test_invalid_json_and_not_an_object():
    (problem,) = lint_definition('{"StartAt": ')
    assert problem.startswith("definition is not valid JSON: ")
    assert lint_definition("[]") == ["definition must be a JSON object"]


def test_start_at_and_transitions_must_exist():
    assert lint_definition(mutated(StartAt="Nope")) == ["StartAt 'Nope' is not a state"]
    problems = lint_definition(mutated(States__Route__Default="Gone"))
    assert problems == ["state 'Route': transition to 'Gone', which is not a state"]
    problems = lint_definition(mutated(States__Charge__Catch__0__Next="Lost"))
    assert "state 'Charge': transition to 'Lost', which is not a state" in problems


def test_terminal_states_and_next_end_rules():
    assert lint_definition(mutated(States__Done__Next="Failed")) == [
        "state 'Done': a Succeed state cannot have Next"
    ]
    assert lint_definition(mutated(States__Fan__End=True)) == [
        "state 'Fan': needs exactly one of Next or End: true"
    ]
    assert lint_definition(mutated(States__Fan__Next=None)) == [
        "state 'Fan': needs exactly one of Next or End: true",
        "state 'Each' is unreachable from StartAt",
        "state 'Done' is unreachable from StartAt",
    ]


def test_unreachable_state():
    definition = mutated(States__Orphan={"Type": "Pass", "End": True})
    assert lint_definition(definition) == ["state 'Orphan' is unreachable from StartAt"]


def test_task_needs_resource():
    assert lint_definition(mutated(States__Charge__Resource=None)) == [
        "state 'Charge': a Task needs a Resource"
    ]


@pytest.mark.parametrize(
    ("retry", "expected"),
    [
        (
            [{"ErrorEquals": []}],
            "state 'Charge': Retry[0].ErrorEquals must be a non-empty list of error names",
        ),
        (
            [{"ErrorEquals": ["States.ALL", "X"]}],
            "state 'Charge': Retry[0]: States.ALL must appear alone in ErrorEquals",
        ),
        (
            [{"ErrorEquals": ["States.ALL"]}, {"ErrorEquals": ["X"]}],
            "state 'Charge': Retry[0]: the States.ALL handler must be the last one",
        ),
        (
            [{"ErrorEquals": ["X"], "IntervalSeconds": "2"}],
            "state 'Charge': Retry[0].IntervalSeconds must be an integer >= 1, not '2'",
        ),
        (
            [{"ErrorEquals": ["X"], "BackoffRate": 0.5}],
            "state 'Charge': Retry[0].BackoffRate must be a number >= 1, not 0.5",
        ),
        (
            [{"ErrorEquals": ["X"], "MaxAttempts": True}],
            "state 'Charge': Retry[0].MaxAttempts must be an integer >= 0, not True",
        ),
        (
            [{"ErrorEquals": ["X"], "MaxDelaySeconds": 1.5}],
            "state 'Charge': Retry[0].MaxDelaySeconds must be an integer >= 1, not 1.5",
        ),
        (
            [{"ErrorEquals": ["X"], "JitterStrategy": "SOME"}],
            "state 'Charge': Retry[0].JitterStrategy must be FULL or NONE, not 'SOME'",
        ),
    ],
)
def test_retry_shapes(retry, expected):
    assert lint_definition(mutated(States__Charge__Retry=retry)) == [expected]


def test_catch_needs_next_and_retry_only_on_task_like_states():
    problems = lint_definition(mutated(States__Charge__Catch=[{"ErrorEquals": ["States.ALL"]}]))
    assert problems == ["state 'Charge': Catch[0] needs a Next"]
    problems = lint_definition(mutated(States__Done__Retry=[{"ErrorEquals": ["X"]}]))
    assert problems == ["state 'Done': only Task, Parallel and Map states can have Retry/Catch"]


def test_parallel_and_map_are_checked_recursively():
    problems = lint_definition(mutated(States__Fan__Branches__0__States__P__Next="Q"))
    assert problems == [
        "state 'Fan': branch 0: state 'P': needs exactly one of Next or End: true",
        "state 'Fan': branch 0: state 'P': transition to 'Q', which is not a state",
    ]
    problems = lint_definition(mutated(States__Each__ItemProcessor__StartAt="Z"))
    assert problems == ["state 'Each': ItemProcessor: StartAt 'Z' is not a state"]
    assert lint_definition(mutated(States__Each__ItemProcessor=None)) == [
        "state 'Each': a Map state needs an ItemProcessor (or Iterator)"
    ]


def test_jsonata_and_jsonpath_fields():
    jsonata: dict[str, Any] = {
        "QueryLanguage": "JSONata",
        "StartAt": "A",
        "States": {
            "A": {"Type": "Pass", "Output": {"x": "{% $states.input.x %}"}, "Assign": {"v": 1}, "Next": "B"},
            "B": {"Type": "Choice", "Choices": [{"Condition": "{% $v = 1 %}", "Next": "C"}], "Default": "C"},
            "C": {"Type": "Succeed"},
        },
    }
    assert lint_definition(jsonata) == []
    broken = copy.deepcopy(jsonata)
    broken["States"]["A"]["Parameters"] = {"a": 1}
    broken["States"]["A"]["ResultPath"] = "$.r"
    broken["States"]["B"]["Choices"][0] = {"Variable": "$.x", "IsPresent": True, "Next": "C"}
    assert lint_definition(broken) == [
        "state 'A': Parameters is not allowed in a JSONata state",
        "state 'A': ResultPath is not allowed in a JSONata state",
        "state 'B': Choices[0] needs a Condition in a JSONata state",
    ]
    jsonpath = mutated(States__Charge__Arguments={"a": 1})
    assert lint_definition(jsonpath) == ["state 'Charge': Arguments is not allowed in a JSONPath state"]
    per_state = mutated(States__Done__QueryLanguage="JSONata", States__Done__Output="{% 1 %}")
    assert lint_definition(per_state) == []


def test_local_engine_parse_error_is_a_problem():
    # Structurally fine for our checks, but the ANTLR grammar (and Step Functions) rejects the unknown field.
    definition = mutated(States__Done__Nonsense=1)
    (problem,) = lint_definition(definition)
    assert problem.startswith("local engine cannot parse the definition: line ")
    assert '"Nonsense"' in problem


def test_lint_stack_clean_fixture_and_broken_definition():
    assert lint_stack(load_stack(TEMPLATES / "full" / "template.yaml")) == []
    problems = lint_stack(load_stack(TEMPLATES / "bad_asl" / "template.yaml"))
    assert problems == [
        "state machine BrokenFlow: state 'First': transition to 'Missing', which is not a state",
        "state machine BrokenFlow: state 'Orphan' is unreachable from StartAt",
    ]


def test_lint_stack_reports_cfn_lint_findings_on_inlined_definition(tmp_path):
    (tmp_path / "flow.json").write_text(
        json.dumps({"StartAt": "A", "States": {"A": {"Type": "Pass", "Nexxt": 1}}})
    )
    (tmp_path / "template.yaml").write_text(
        "Transform: AWS::Serverless-2016-10-31\n"
        "Resources:\n"
        "  Flow:\n"
        "    Type: AWS::Serverless::StateMachine\n"
        "    Properties:\n"
        "      DefinitionUri: flow.json\n"
        "      Policies: []\n"
    )
    problems = lint_stack(load_stack(tmp_path / "template.yaml"))
    assert "state machine Flow: state 'A': needs exactly one of Next or End: true" in problems
    cfn = [p for p in problems if p.startswith("cfn-lint E3601 (template.yaml, translated: Resources/Flow/")]
    assert any("'Nexxt' was unexpected" in p for p in cfn)
