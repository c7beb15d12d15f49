"""Only the CLI turns exceptions into messages and exit codes: cloud failures are one line."""

import argparse

import pytest
from keystoneauth1 import exceptions as ksa_exc
from openstack import exceptions as sdk_exc

from osbuild.cli import main


@pytest.mark.parametrize("failure", [
    ksa_exc.ConnectFailure("Unable to establish connection to http://cloud:9292/v2/images"),
    sdk_exc.SDKException("Image creation failed: Connection aborted."),
], ids=["keystoneauth", "openstacksdk"])
def test_a_cloud_failure_no_command_handled_is_one_line_exit_1(
    failure: Exception, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def fail(args: argparse.Namespace) -> int:
        raise failure

    monkeypatch.setattr("osbuild.cli.schema.run", fail)
    assert main(["schema"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("osbuild: error: cloud: ") and "Traceback" not in err


def test_other_exceptions_are_not_swallowed(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(args: argparse.Namespace) -> int:
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr("osbuild.cli.schema.run", fail)
    with pytest.raises(ZeroDivisionError):
        main(["schema"])


def test_prepare_uefi_with_a_missing_work_dir_is_an_input_error(
    tmp_path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Seen against the real stack: a raw FileNotFoundError escaped after the download began.
    missing = tmp_path / "nowhere"
    code = main(["media", "prepare-uefi", "--image", "x.iso", "--os-cloud", "none",
                 "--work-dir", str(missing)])
    assert code == 2
    assert capsys.readouterr().err.strip() == (
        f"osbuild: error: --work-dir {missing}: not an existing folder")
