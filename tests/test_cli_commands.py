"""The `abdr` command tree: the compact plan syntax (schedules, windows, retention) parsed into
the domain models, plan files and `apply` files, the error paths that need no server (one
line on stderr, exit 2 for bad input), and one smoke test of the whole CLI against `abdr up`
with its demo seed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import time as dtime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError
from typer.testing import CliRunner

from models.plans import BackupDelayOption
from models.retention import RetentionKind
from models.schedule import Schedule, ScheduleKind, Weekday
from starter.cli.app import app
from starter.cli.grammar import (
    UsageError,
    format_schedule,
    parse_consistency,
    parse_delay,
    parse_network_map,
    parse_retention,
    parse_schedule,
    parse_vm,
    parse_window,
)
from starter.cli.plan_files import load_apply_file, load_plan_file
from starter.cli.plan_options import PlanOptions, plan_from_options
from tests.ports import free_port

ABDR = str(Path(sys.executable).parent / "abdr")
runner = CliRunner()

# -- the compact schedule syntax ------------------------------------------------------------


@pytest.mark.parametrize("text, expected", [
    ("every 15m", {"kind": ScheduleKind.MINUTELY, "interval": 15}),
    ("Every 5 minutes", {"kind": ScheduleKind.MINUTELY, "interval": 5}),
    ("every 2h at :10", {"kind": ScheduleKind.HOURLY, "interval": 2, "minute": 10}),
    ("every 6 hours", {"kind": ScheduleKind.HOURLY, "interval": 6, "minute": 0}),
    ("hourly at :45", {"kind": ScheduleKind.HOURLY, "interval": 1, "minute": 45}),
    ("daily 01:00,13:00", {"kind": ScheduleKind.DAILY, "interval": 1, "times": [dtime(1), dtime(13)]}),
    ("daily 13:00,1:00", {"kind": ScheduleKind.DAILY, "times": [dtime(1), dtime(13)]}),  # sorted, H:MM ok
    ("every 2d 01:00", {"kind": ScheduleKind.DAILY, "interval": 2, "times": [dtime(1)]}),
    ("weekly mon,thu 02:30", {"kind": ScheduleKind.WEEKLY, "weekdays": [Weekday.MON, Weekday.THU],
                              "times": [dtime(2, 30)]}),
    ("weekly mon-fri 22:00", {"kind": ScheduleKind.WEEKLY, "weekdays": list(Weekday)[:5]}),
    ("weekly sunday 03:00", {"kind": ScheduleKind.WEEKLY, "weekdays": [Weekday.SUN]}),
    ("monthly 1,15 03:00", {"kind": ScheduleKind.MONTHLY, "days_of_month": [1, 15], "times": [dtime(3)]}),
    ("monthly 1-3,28 00:30", {"kind": ScheduleKind.MONTHLY, "days_of_month": [1, 2, 3, 28]}),
])
def test_compact_schedules_parse_into_the_model(text: str, expected: dict) -> None:
    s = parse_schedule(text, "Europe/Paris")
    assert s.time_zone == "Europe/Paris"
    for field, value in expected.items():
        assert getattr(s, field) == value, field


@pytest.mark.parametrize("text, message", [
    ("every fortnight", "is not understood; use one of: every 15m"),
    ("every 15", "is not understood"),
    ("every 3m", "interval 3 is out of range for MINUTELY: 5-59"),
    ("every 24h", "interval 24 is out of range for HOURLY: 1-23"),
    ("every 2h at :60", "minute: Input should be less than or equal to 59"),
    ("every 31d 01:00", "interval 31 is out of range for DAILY: 1-30"),
    ("daily 25:00", "time '25:00' is not HH:MM"),
    ("daily 01:00,01:10", "times must be at least 15 minutes apart"),
    ("daily", "is not understood"),
    ("weekly 02:30", "is not understood"),
    ("weekly mon,mon 02:30", "weekday 'mon' is given twice"),
    ("weekly fri-mon 02:30", "weekday range 'fri-mon' runs backwards"),
    ("weekly funday 02:30", "weekday 'funday' is not understood"),
    ("monthly 0,15 03:00", "days_of_month [0] out of range 1-31"),
    ("monthly 32 03:00", "days_of_month [32] out of range 1-31"),
])
def test_bad_schedules_name_the_problem(text: str, message: str) -> None:
    with pytest.raises(UsageError) as e:
        parse_schedule(text)
    assert str(e.value).startswith(f"schedule {text!r}") and message in str(e.value)


def test_unknown_time_zone_is_named() -> None:
    with pytest.raises(UsageError, match="time_zone 'Mars/Olympus' is not a known IANA time zone"):
        parse_schedule("every 15m", "Mars/Olympus")


_times = st.tuples(st.integers(0, 14), st.sets(st.integers(0, 95), min_size=1, max_size=4)).map(
    lambda t: [f"{(t[0] + 15 * q) // 60:02d}:{(t[0] + 15 * q) % 60:02d}" for q in sorted(t[1])])
schedules = st.one_of(
    st.builds(lambda n: {"kind": "MINUTELY", "interval": n}, st.integers(5, 59)),
    st.builds(lambda n, m: {"kind": "HOURLY", "interval": n, "minute": m}, st.integers(1, 23), st.integers(0, 59)),
    st.builds(lambda n, t: {"kind": "DAILY", "interval": n, "times": t}, st.integers(1, 30), _times),
    st.builds(lambda w, t: {"kind": "WEEKLY", "weekdays": w, "times": t},
              st.lists(st.sampled_from(list(Weekday)), min_size=1, max_size=7, unique=True), _times),
    st.builds(lambda d, t: {"kind": "MONTHLY", "days_of_month": d, "times": t},
              st.lists(st.integers(1, 31), min_size=1, max_size=6, unique=True), _times),
)


@given(schedules, st.sampled_from(["UTC", "Europe/Paris", "America/New_York"]))
def test_every_schedule_has_a_compact_form_that_parses_back(data: dict, zone: str) -> None:
    s = Schedule.model_validate({**data, "time_zone": zone})
    assert parse_schedule(format_schedule(s), zone) == s


# -- windows, retention and the small choices -------------------------------------------------

def test_window_retention_and_choices() -> None:
    w = parse_window("22:00-06:00")
    assert (w.start, w.end, w.length_minutes) == (dtime(22), dtime(6), 480)
    assert parse_window(" 1:00 - 2:30 ").length_minutes == 90
    assert (parse_retention("count:7").kind, parse_retention("count:7").value) == (RetentionKind.COUNT, 7)
    assert (parse_retention("days:30").kind, parse_retention("days:30").value) == (RetentionKind.TIME, 30)
    assert parse_retention("forever").kind == RetentionKind.FOREVER
    assert parse_delay("keep-go-on") == BackupDelayOption.KEEP_GO_ON
    assert parse_delay("STOP_BACKUP") == BackupDelayOption.STOP_BACKUP
    assert parse_consistency("fs").value == "FILE_SYSTEM_CONSISTENT"
    assert str(parse_vm("c1/web")) == "c1/web"
    assert parse_network_map("prod=dr-prod").model_dump() == {"source": "prod", "target": "dr-prod"}


@pytest.mark.parametrize("call, message", [
    (lambda: parse_window("22:00"), "window '22:00' is not understood; use HH:MM-HH:MM"),
    (lambda: parse_window("22:00-22:10"), "window '22:00-22:10': window 22:00-22:10 is 10 min long; "
                                          "a window must be at least 15 minutes"),
    (lambda: parse_window("22:00-24:00"), "time '24:00' is not HH:MM"),
    (lambda: parse_retention("count:0"), "retention COUNT needs a number of restore points from 1 to"),
    (lambda: parse_retention("weeks:2"), "use count:N, days:N or forever"),
    (lambda: parse_delay("later"), "delay option 'later' is not one of: keep-go-on, stop-backup"),
    (lambda: parse_consistency("app"), "consistency 'app' is not one of: crash, fs"),
    (lambda: parse_vm("web"), "vm 'web': write it cluster/vm"),
    (lambda: parse_vm("c1/we b"), "vm 'c1/we b': vm: 'we b' contains ' '; a name uses letters, digits"),
    (lambda: parse_network_map("prod"), "network map 'prod': write it source=target"),
])
def test_bad_options_name_the_problem(call, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(UsageError) as e:
        call()
    assert message in str(e.value)


# -- plans from options and from files ---------------------------------------------------------

def full_options() -> PlanOptions:
    return PlanOptions(vms=["c1/web", "c1/db"], repository="r1", schedule="every 15m", full_schedule="weekly sun 02:00",
                       window="22:00-06:00", delay="keep-go-on", retention="count:7", tz="Europe/Paris",
                       consistency="fs", compression=False, service="fast", description="gold")


def test_plan_from_options_fills_every_field() -> None:
    spec = plan_from_options("gold", full_options())
    assert [str(v) for v in spec.vms] == ["c1/web", "c1/db"]
    assert spec.schedule.time_zone == spec.full_schedule.time_zone == "Europe/Paris"  # type: ignore[union-attr]
    assert format_schedule(spec.full_schedule) == "weekly sun 02:00"  # type: ignore[arg-type]
    assert (spec.window.start, spec.delay_option, spec.retention.value) == (  # type: ignore[union-attr]
        dtime(22), BackupDelayOption.KEEP_GO_ON, 7)
    assert (spec.compression, spec.consistency.value, spec.backup_service, spec.description) == (
        False, "FILE_SYSTEM_CONSISTENT", "fast", "gold")


def test_update_changes_only_what_is_named() -> None:
    current = plan_from_options("gold", full_options()).model_dump(mode="json")
    spec = plan_from_options("gold", PlanOptions(schedule="every 2h at :10", window="none"), current)
    assert format_schedule(spec.schedule) == "every 2h at :10" and spec.window is None
    assert spec.schedule.time_zone == "Europe/Paris"  # the plan's zone is kept
    assert spec.model_dump(exclude={"schedule", "window"}) == plan_from_options(
        "gold", full_options()).model_dump(exclude={"schedule", "window"})
    moved = plan_from_options("gold", PlanOptions(tz="Asia/Tokyo", full_schedule="none"), current)
    assert moved.schedule.time_zone == "Asia/Tokyo" and moved.full_schedule is None


def test_create_without_required_options_names_them() -> None:
    with pytest.raises(UsageError, match=r"needs --vm, --repository, --retention \(or -f plan.yaml\)"):
        plan_from_options("gold", PlanOptions(schedule="every 15m"))


def test_plan_rules_across_fields_come_from_the_model() -> None:
    o = PlanOptions(vms=["c1/web", "c1/web"], repository="r1", schedule="daily 03:00", retention="forever")
    with pytest.raises(ValidationError, match="each VM appears once in a plan"):
        plan_from_options("gold", o)
    o.vms, o.window = ["c1/web"], "22:00-23:00"
    with pytest.raises(ValidationError, match="schedule has no due time inside the window 22:00-23:00"):
        plan_from_options("gold", o)


def test_plan_file_takes_shorthands_and_full_models(tmp_path: Path) -> None:
    f = tmp_path / "gold.yaml"
    f.write_text("name: gold\nvms: [c1/web, {cluster: c1, vm: db}]\nrepository: r1\nschedule: every 15m\n"
                 "full_schedule: {kind: WEEKLY, weekdays: [SUN], times: ['02:00']}\ntime_zone: Europe/Paris\n"
                 "window: 22:00-06:00\nretention: days:30\ndelay_option: keep-go-on\nconsistency: CRASH_CONSISTENT\n")
    spec = load_plan_file(f)
    assert spec == plan_from_options("gold", PlanOptions(
        vms=["c1/web", "c1/db"], repository="r1", schedule="every 15m", full_schedule="weekly sun 02:00",
        window="22:00-06:00", delay="keep-go-on", retention="days:30", tz="Europe/Paris"))
    assert load_plan_file(f, "gold") == spec
    with pytest.raises(UsageError, match="describes plan 'gold', not 'silver'"):
        load_plan_file(f, "silver")
    f.write_text("name: gold\nvms: [c1/web]\nrepository: r1\nschedule: every 3m\nretention: forever\n")
    with pytest.raises(UsageError, match=r"gold.yaml: schedule 'every 3m': interval 3 is out of range"):
        load_plan_file(f)


def test_apply_file_resolves_paths_and_names_bad_entries(tmp_path: Path) -> None:
    f = tmp_path / "plans.yaml"
    f.write_text("sites: [{name: dr}]\n"
                 "clusters: [{name: c1, site: default}, {name: c2, site: dr, path: clusters/c2}]\n"
                 "repositories: [{name: r1, path: repos/r1}]\n"
                 "backup_plans: [{name: gold, vms: [c1/web], repository: r1, schedule: every 15m,"
                 " retention: count:3}]\n")
    parsed = load_apply_file(f, tmp_path / "state")
    assert [s.name for s in parsed.sites] == ["dr"]
    assert [c.endpoint for c in parsed.clusters] == [str(tmp_path / "state" / "clusters" / "c1"),
                                                      str(tmp_path / "clusters" / "c2")]
    assert parsed.repositories[0].path == str(tmp_path / "repos" / "r1")
    assert parsed.backup_plans[0].retention.value == 3
    for text, message in [
        ("plans: []\n", "unknown section(s) ['plans']"),
        ("sites: {name: dr}\n", "sites must be a list"),
        ("sites: [{name: dr}, {name: dr}]\n", "sites names repeat: ['dr']"),
        ("clusters: [{name: c1, site: default, driver: vmware}]\n", "clusters[0] (c1): driver: 'vmware' is not one of 'local', 'aoc', 'libvirt'"),
        ("backup_plans: [{name: p, vms: [c1/web], repository: r, schedule: hourly, retention: count:1, x: 1}]\n",
         "backup_plans[0] (p): x: Extra inputs are not permitted"),
        ("backup_plans: [{name: p, vms: [web], repository: r, schedule: hourly, retention: count:1}]\n",
         "backup_plans[0] (p): vm 'web': write it cluster/vm"),
        ("clusters: [{name: c1, site: default, driver: aoc, path: x}]\n", "clusters[0] (c1): driver 'aoc' takes no path"),
        ("clusters: [{name: c1, site: default, cluster_id: x}]\n", "clusters[0] (c1): driver 'local' takes no cluster id"),
        ("sites: [\n", "not valid YAML"),
    ]:
        f.write_text(text)
        with pytest.raises(UsageError) as e:
            load_apply_file(f, tmp_path)
        assert str(e.value).startswith(str(f)) and message in str(e.value), str(e.value)


# -- the CLI's error paths (no server needed: input is checked before connecting) -----------------

def one_line_error(result, code: int = 2) -> str:  # type: ignore[no-untyped-def]
    assert result.exit_code == code, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
    return lines[0]


@pytest.mark.parametrize("args, message", [
    (["--schedule", "every 3m"], "--schedule 'every 3m': interval 3 is out of range for MINUTELY: 5-59"),
    (["--schedule", "sometimes"], "--schedule 'sometimes' is not understood; use one of:"),
    (["--schedule", "every 15m", "--window", "22:00"], "window '22:00' is not understood; use HH:MM-HH:MM"),
    (["--schedule", "every 15m", "--window", "22:00-22:05"], "a window must be at least 15 minutes"),
    (["--schedule", "daily 03:00", "--window", "22:00-23:00"], "schedule has no due time inside the window"),
    (["--schedule", "daily 23:00", "--full-schedule", "weekly sun 12:00", "--window", "22:00-06:00"],
     "full_schedule has no due time inside the window 22:00-06:00: no full backup would ever run"),
    (["--schedule", "every 15m", "--retention", "count:0"], "retention COUNT needs a number"),
    (["--schedule", "every 15m", "--delay", "later"], "delay option 'later' is not one of"),
    (["--schedule", "every 15m", "--tz", "Mars/Olympus"], "'Mars/Olympus' is not a known IANA time zone"),
])
def test_create_with_bad_options_is_one_line_exit_2(args: list[str], message: str) -> None:
    base = {"--vm": "c1/web", "--repository": "r1", "--retention": "count:7"}
    given = dict(zip(args[::2], args[1::2]))
    argv = ["backup-plan", "create", "gold"] + [x for k, v in {**base, **given}.items() for x in (k, v)]
    assert message in one_line_error(runner.invoke(app, argv))


@pytest.mark.parametrize("argv, message", [
    (["backup-plan", "delete", "gold"], "--keep-points or --delete-points"),
    (["backup-plan", "create", "gold", "--schedule", "every 15m"], "needs --vm, --repository, --retention"),
    (["backup-plan", "create"], "name the plan (or give -f plan.yaml)"),
    (["backup-plan", "update", "gold"], "nothing to change"),
    (["backup-plan", "update"], "name the plan (or give -f plan.yaml)"),
    (["backup-plan", "update", "gold", "--schedule", "every 3m"], "interval 3 is out of range"),  # before contact
    (["replication-plan", "update", "gold", "--tz", "Mars/Olympus"], "'Mars/Olympus' is not a known IANA time zone"),
    (["restore", "p1", "--mode", "sideways"], "mode 'sideways' is not one of: inplace, rebuild"),
    (["restore", "p1", "--mode", "rebuild"], "new_name is required for a REBUILD restore"),
    (["restore", "p1", "--mode", "inplace", "--new-name", "x"], "apply to REBUILD only"),
    (["restore", "p1", "--mode", "rebuild", "--new-name", "x", "--network-map", "a"], "write it source=target"),
    (["restore-point", "list", "--vm", "web"], "vm 'web': write it cluster/vm"),
])
def test_usage_errors_are_one_line_exit_2(argv: list[str], message: str) -> None:
    assert message in one_line_error(runner.invoke(app, argv))


def test_cluster_drivers_are_the_registrys() -> None:
    result = runner.invoke(app, ["cluster", "add", "c9", "--site", "s", "--driver", "vmware"])
    assert result.exit_code == 2 and "'vmware' is not one of 'local'" in result.stderr, result.stderr


def test_plan_file_and_options_together_are_refused(tmp_path: Path) -> None:
    f = tmp_path / "p.yaml"
    f.write_text("name: gold\nvms: [c1/web]\nrepository: r1\nschedule: every 15m\nretention: forever\n")
    assert "give either -f FILE or plan options" in one_line_error(
        runner.invoke(app, ["backup-plan", "create", "-f", str(f), "--tz", "UTC"]))
    f.write_text("name: gold\nvms: [c1/web]\nrepository: r1\nschedule: every 15m\nretention: forever\ncolour: red\n")
    assert "p.yaml: colour: Extra inputs are not permitted" in one_line_error(
        runner.invoke(app, ["backup-plan", "create", "-f", str(f)]))
    f.write_text("clusters: [{name: c1}]\n")
    assert "clusters[0] (c1): site: Field required" in one_line_error(runner.invoke(app, ["apply", "-f", str(f)]))


def run(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([ABDR, *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def test_installed_command_errors_are_one_line(tmp_path: Path) -> None:
    env = {"ABDR_TEMPORAL_ADDRESS": "127.0.0.1:1", "ABDR_DATA_DIR": str(tmp_path)}
    long_bad = run("backup-plan", "create", "gold", "--vm", "c1/web", "--repository", "r1", "--retention",
                   "count:7", "--schedule", "weekly mon,thu,sat 02:30,02:40", env=env)
    assert long_bad.returncode == 2 and len(long_bad.stderr.strip().splitlines()) == 1  # long: not wrapped
    assert "times must be at least 15 minutes apart" in long_bad.stderr
    down = run("backup-plan", "list", "--json", env=env)
    assert down.returncode == 1 and down.stdout == "" and "Traceback" not in down.stderr
    assert down.stderr.strip().splitlines() == [
        "error: cannot reach Temporal at 127.0.0.1:1: Connection refused (is `abdr up` running? see "
        "ABDR_TEMPORAL_ADDRESS)"]


@pytest.mark.parametrize("argv, value, why", [
    (["site", "add", "a/b"], "a/b", "looks like a path ('/', '\\' or '..')"),
    (["cluster", "add", "c/d", "--site", "default"], "c/d", "looks like a path ('/', '\\' or '..')"),
    (["cluster", "add", "c1", "--site", ".hidden"], ".hidden", "starts with '.'"),
    (["site", "add", "x" * 64], "x" * 20 + "...", "is 64 characters long"),
    (["repository", "create", "r b", "--path", "/srv/r"], "r b", "contains ' '"),
])
def test_bad_names_are_one_line_in_words_exit_2(tmp_path: Path, argv: list[str], value: str, why: str) -> None:
    """Refused before anything is contacted (Temporal here is down), saying the naming rules
    in words: which characters, how it starts, how long, never the regular expression."""
    r = run(*argv, env={"ABDR_TEMPORAL_ADDRESS": "127.0.0.1:1", "ABDR_DATA_DIR": str(tmp_path)})
    [line] = r.stderr.strip().splitlines()
    assert r.returncode == 2 and line.startswith("error: "), r.stderr
    assert (f"{value!r} {why}; a name uses letters, digits, '.', '_' or '-', starts with a letter, digit or '_', "
            "and has 1-63 characters") in line
    assert "pattern" not in line and "[A-Za-z" not in line


# -- one smoke test of the whole CLI on `abdr up` with the demo seed ------------------------------


class Up:
    """`abdr up` in the background; its logs go to a file (a pipe nobody reads would fill)."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.log = open(log, "ab")
        self.proc = subprocess.Popen([ABDR, "up"], env=env, stdout=subprocess.PIPE, stderr=self.log, text=True)
        self.banner = ""
        deadline = time.monotonic() + 90
        while "Ctrl-C stops everything" not in self.banner:
            line = self.proc.stdout.readline()  # type: ignore[union-attr]
            if not line and self.proc.poll() is not None:
                raise AssertionError(f"abdr up exited {self.proc.returncode}; see {log}")
            self.banner += line
            assert time.monotonic() < deadline, f"abdr up did not come up: {self.banner}"

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGINT)
        try:
            return self.proc.wait(60)
        finally:
            self.proc.stdout.close()  # type: ignore[union-attr]
            self.log.close()


def cli_json(env: dict[str, str], *args: str) -> object:
    r = run(*args, "--json", env=env)
    assert r.returncode == 0, (args, r.stderr)
    return json.loads(r.stdout)


def run_plan_now(env: dict[str, str], plan: str) -> subprocess.CompletedProcess[str]:
    """A manual run; if the plan's schedule fired just before (it is paused right after the
    seed, but a tick may already be running), wait for that run to end and try again."""
    deadline = time.monotonic() + 60
    while True:
        r = run("backup-plan", "run", plan, "--wait", "--json", env=env)
        if "is already running" not in r.stderr or time.monotonic() > deadline:
            return r
        time.sleep(0.5)


def test_smoke_cli_on_abdr_up_with_the_demo_seed(tmp_path: Path) -> None:
    ui = free_port()
    env = {**os.environ, "ABDR_DATA_DIR": str(tmp_path / "state"), "ABDR_TEMPORAL_ADDRESS": f"127.0.0.1:{free_port()}",
           "ABDR_UI_PORT": str(ui), "ABDR_TEMPORAL_UI_URL": f"http://127.0.0.1:{ui}", "ABDR_LOG_FORMAT": "json",
           "ABDR_DEMO": "true"}
    up = Up(env, tmp_path / "up.log")
    try:
        assert "Demo seeded" in up.banner and "backup plan demo" in up.banner
        said = run("status", "--json", "--no-probe", env=env)
        assert json.loads(said.stdout)["demo"]["state"] == "ready", said.stdout  # the banner came once it was
        assert cli_json(env, "backup-plan", "pause", "demo")["status"] == "PAUSED"  # type: ignore[index]
        [plan] = cli_json(env, "backup-plan", "list")  # type: ignore[misc]
        assert plan["spec"]["name"] == "demo" and len(plan["spec"]["vms"]) == 3
        assert plan["spec"]["schedule"]["kind"] == "MINUTELY" and plan["spec"]["schedule"]["interval"] == 5
        assert plan["spec"]["retention"] == {"kind": "COUNT", "value": 6}

        r = run_plan_now(env, "demo")
        assert r.returncode == 0, r.stderr
        result = json.loads(r.stdout)
        assert result["result"] == "SUCCESS" and result["workflow_id"] == "backup-plan/demo"
        made = {v["point_id"] for v in result["vms"] if v["ok"]}
        assert len(made) == 3

        points = cli_json(env, "restore-point", "list", "--plan", "demo")
        assert made <= {p["id"] for p in points}  # type: ignore[union-attr]
        mine = [p for p in points if p["id"] in made]  # type: ignore[union-attr]
        assert sorted(p["vm"] for p in mine) == ["app", "db", "web"]
        assert {p["creation"] for p in mine} == {"MANUAL"} and {p["state"] for p in mine} == {"READY"}
    finally:
        assert up.stop() == 0
    assert not (tmp_path / "state" / "demo-state.json").exists()  # a stopped stack has no demo to report

    again = Up(env, tmp_path / "up.log")  # the seed is skipped once a plan exists
    try:
        assert "Demo seeded" not in again.banner
        assert [p["spec"]["name"] for p in cli_json(env, "backup-plan", "list")] == ["demo"]  # type: ignore[index]
    finally:
        assert again.stop() == 0


def test_apply_file_aoc_cluster_names_its_cluster_id(tmp_path: Path) -> None:
    f = tmp_path / "plans.yaml"
    f.write_text("clusters: [{name: acos1, site: dc1, driver: aoc, endpoint: 'https://aoc.example', cluster_id: c77}]\n")
    [c] = load_apply_file(f, tmp_path).clusters
    assert (c.driver, c.endpoint) == ("aoc", "https://aoc.example#c77")
