"""``offerbandit call``: JSON in, JSON out, over real gRPC to a real server on 127.0.0.1:0."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from offerbandit.call import main
from server.app import RunningServer, start_server
from server.auth import add_token
from server.settings import Settings
from tests.conftest import ServerFactory
from tests.tls import Pki, make_pki

CHOOSE = {
    "customer": {"id": "c-42", "features": {"stage": "at_risk", "ltv": 310, "consent_sms": False}},
    "trigger": {"type": "cart_abandoned", "features": {"cart_value": {"number": 84}}},
    "offers": [
        {"id": "discount_10", "discount_rate": 0.1},
        {"id": "free_shipping", "fixedCost": 4.9},
    ],
    "channels": [{"id": "email", "contact_cost": 0.002}, {"id": "sms", "contact_cost": 0.05}],
}


def run(
    capsys: pytest.CaptureFixture[str], argv: list[str], stdin: str = ""
) -> tuple[int, str, str]:
    code = main(argv, stdin=io.StringIO(stdin))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def target(make_server: ServerFactory) -> str:
    return make_server(event_id_prefix="00000000000000ca").address


def test_unary_calls_round_trip_a_decision_and_its_outcome(
    target: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, ["Choose", json.dumps(CHOOSE), "--target", target])
    assert code == 0
    answer = json.loads(out)
    assert len(answer["event_id"]) == 32
    assert 0 < answer["propensity"] <= 1
    ranked = {(r["treatment"]["offer_id"], r["treatment"]["channel_id"]) for r in answer["ranking"]}
    assert ("", "") in ranked
    assert ("discount_10", "email") in ranked
    assert ("discount_10", "sms") not in ranked  # consent_sms: false, a plain JSON flag

    outcome = {"outcome_id": "o-1", "event_id": answer["event_id"], "type": "purchase",
               "revenue": 84}  # fmt: skip
    code, out, _ = run(capsys, ["RecordOutcome", "--target", target, json.dumps(outcome)])
    assert code == 0
    assert json.loads(out)["status"] == "OUTCOME_STATUS_ATTRIBUTED"

    code, out, _ = run(capsys, ["getdecision", "--target", target, "--compact"],
                       stdin=json.dumps({"event_id": answer["event_id"]}))  # fmt: skip
    assert code == 0
    assert out.count("\n") == 1
    decision = json.loads(out)
    assert decision["customer"]["features"]["ltv"] == {"number": 310.0}
    assert decision["state"] == "DECISION_STATE_OPEN"

    code, out, _ = run(capsys, ["offerbandit.v1.DecisionService/GetStats", "--target", target])
    stats = json.loads(out)
    assert code == 0
    assert stats["decisions"] == 1
    assert stats["outcomes_attributed"] == 1


def test_streams_read_json_lines_or_an_array_and_answer_json_lines(
    target: str, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = {**CHOOSE, "customer": {"id": ""}}
    lines = "\n".join(json.dumps(r) for r in (CHOOSE, bad, CHOOSE)) + "\n"
    code, out, _ = run(capsys, ["ChooseStream", "--target", target], stdin=lines)
    assert code == 0
    results = [json.loads(line) for line in out.splitlines()]
    assert [r["index"] for r in results] == [0, 1, 2]
    assert results[1]["error_code"] == "INVALID_ARGUMENT"
    assert "customer.id" in results[1]["error"]
    event = results[0]["decision"]["event_id"]

    outcomes = [
        {"outcome_id": "a", "event_id": event, "type": "click"},
        {"outcome_id": "b", "event_id": "unknown", "type": "click"},
    ]
    code, out, _ = run(capsys, ["RecordOutcomes", "--target", target, json.dumps(outcomes)])
    answer = json.loads(out)
    assert code == 0
    assert (answer["accepted"], answer["rejected"]) == (1, 1)

    code, out, _ = run(
        capsys,
        ["StreamOutcomes", "--target", target],
        stdin=json.dumps({"outcome_id": "c", "customer_id": "c-42", "type": "click"}),
    )
    assert code == 0
    assert json.loads(out)["status"] == "OUTCOME_STATUS_ATTRIBUTED"


@pytest.mark.parametrize(
    ("method", "text", "message"),
    [
        ("Choose", '{"customer": {"idd": "c"}}',
         r'no field named "idd" at "ChooseRequest.customer"'),
        ("Choose", '{"customer": {"id": "c", "features": {"ltv": {"numbr": 3}}}}',
         r'no field named "numbr" at "ChooseRequest.customer.features\[ltv\]"'),
        ("Choose", '{"customer": ', r"not JSON: Expecting value: line 1 column 13"),
        ("Choose", "[1]", r"ChooseRequest must be a JSON object, not list"),
        ("RecordOutcomes", '{"outcome_id": "a"}\n{"outcome_id": 5, "x": 1}',
         r"bad JSON for offerbandit.v1.Outcome \(line 2\)"),
        ("Nope", "{}", r"no method 'Nope' in offerbandit.v1.DecisionService"),
    ],
)  # fmt: skip
def test_bad_json_names_the_field_and_sends_nothing(
    target: str, capsys: pytest.CaptureFixture[str], method: str, text: str, message: str
) -> None:
    code, out, err = run(capsys, [method, "--target", target], stdin=text)
    assert code == 2
    assert out == ""
    assert err.startswith("offerbandit call: ")
    assert re.search(message, err), err
    code, out, _ = run(capsys, ["GetStats", "--target", target])
    assert json.loads(out)["decisions"] == 0
    assert json.loads(out)["outcomes_unattributed"] == 0


def test_server_errors_give_the_status_and_the_field(
    target: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, ["Choose", '{"trigger": {"type": "x"}}', "--target", target])
    assert code == 1
    assert "Choose: INVALID_ARGUMENT: customer: is required" in err
    code, _, err = run(capsys, ["GetDecision", '{"event_id": "nope"}', "--target", target])
    assert code == 1
    assert "NOT_FOUND: event_id:" in err


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def secured(pki: Pki, tmp_path: Path) -> Iterator[tuple[RunningServer, str]]:
    tokens_file = tmp_path / "tokens.toml"
    token = add_token(tokens_file, "shell", ["read"])
    running = start_server(
        Settings.load(
            host="127.0.0.1",
            port=0,
            data_dir=tmp_path / "data",
            tls_cert_file=pki.server_cert,
            tls_key_file=pki.server_key,
            tls_client_ca_file=pki.ca,
            tokens_file=tokens_file,
        )
    )
    yield running, token
    running.stop(grace=1.0)


def test_tls_client_certificates_and_the_token_as_open_channel_takes_them(
    secured: tuple[RunningServer, str],
    pki: Pki,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    running, token = secured
    tls = ["--target", running.address, "--ca-file", str(pki.ca), "--cert-file",
           str(pki.client_cert), "--key-file", str(pki.client_key)]  # fmt: skip
    code, out, _ = run(capsys, ["GetStats", *tls, "--token", token])
    assert code == 0
    assert json.loads(out)["decisions"] == 0
    monkeypatch.setenv("OFFERBANDIT_TOKEN", token)
    assert run(capsys, ["GetStats", *tls])[0] == 0
    monkeypatch.delenv("OFFERBANDIT_TOKEN")
    code, _, err = run(capsys, ["GetStats", *tls])
    assert code == 1
    assert "UNAUTHENTICATED" in err
    code, _, err = run(capsys, ["Choose", "{}", *tls, "--token", token])
    assert code == 1
    assert "PERMISSION_DENIED" in err
    code, _, err = run(capsys, ["GetStats", "--target", running.address, "--token", token,
                                "--timeout", "3"])  # fmt: skip
    assert code == 1
    assert "UNAVAILABLE" in err


def _command(target: str, *args: str, stdin: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "OFFERBANDIT_TOKEN"}
    return subprocess.run(
        [sys.executable, "-m", "offerbandit.cli", "call", *args, "--target", target],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )


def test_the_command_streams_a_pipe_and_stops_at_a_bad_line(target: str) -> None:
    good: dict[str, Any] = {"outcome_id": "p1", "customer_id": "c9", "type": "click"}
    ok = _command(target, "StreamOutcomes", stdin=json.dumps(good) + "\n\n")
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["status"] == "OUTCOME_STATUS_UNATTRIBUTED"
    lines = [json.dumps({**good, "outcome_id": "p2"}), '{"outcome_id": "p3", "typo": 1}',
             json.dumps({**good, "outcome_id": "p4"})]  # fmt: skip
    bad = _command(target, "StreamOutcomes", stdin="\n".join(lines) + "\n")
    assert bad.returncode == 2
    assert "(line 2)" in bad.stderr
    assert '"typo"' in bad.stderr
    answered = [json.loads(line)["outcome_id"] for line in bad.stdout.splitlines()]
    assert answered == ["p2"]  # the good line before it was sent and answered; none after


def test_choose_batch_stream_reads_a_template_and_customers_as_json_lines(
    target: str, capsys: pytest.CaptureFixture[str]
) -> None:
    template = {k: v for k, v in CHOOSE.items() if k != "customer"}
    first = {
        "template": template,
        "customers": [
            {"customer": {"id": "b1", "features": {"ltv": 12}}, "request_id": "j:b1"},
            {"customer": {"id": ""}},
        ],
    }
    second = {"customers": [{"customer": {"id": "b2"}, "request_id": "j:b2"}]}
    lines = "\n".join(json.dumps(m) for m in (first, second)) + "\n"
    code, out, _ = run(capsys, ["ChooseBatchStream", "--target", target], stdin=lines)
    assert code == 0
    answers = [json.loads(line) for line in out.splitlines()]
    assert [[r["index"] for r in a["results"]] for a in answers] == [[0, 1], [2]]
    assert answers[0]["results"][1]["error_code"] == "INVALID_ARGUMENT"
    assert answers[0]["results"][1]["error"].startswith("customer.id")
    assert answers[1]["results"][0]["decision"]["event_id"]
