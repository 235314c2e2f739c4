"""The s5cmd backend: one s5cmd process moves a whole batch of explicit transfers.

The batch is written to a command file (`s5cmd run FILE`, one quoted `cp --raw` per transfer, so names
are data, never shell); results and errors are read from s5cmd's `--json` lines as they stream, and
its exit status is checked. Credentials travel in the child's environment, never on its command line.
Listing and deleting are inherited from the boto3 backend (see s3_boto3.py for why).
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
from typing import Dict, List

from toolbox.s3.backends.boto import Boto3Backend, finish_download, prepare_folder, remove_quietly, temp_path_for
from toolbox.s3.paths import Transfer, local_path_for

RETRY_COUNT = 10
_NOISE = re.compile(r"\s*status code: .*$")     # request ids etc. after the S3 error message


def quote(text):
    """Shell-style single quoting, which `s5cmd run` understands."""
    return "'" + text.replace("'", "'\"'\"'") + "'"


def representable(transfer):
    """Can this transfer be written as one line of a command file? (newlines cannot)"""
    names = transfer.key + transfer.path
    if "\n" in names or "\r" in names:
        return False
    try:
        names.encode("utf-8")
    except UnicodeEncodeError:      # undecodable local file names: s5cmd would print them mangled
        return False
    return True


class S5cmdBackend(Boto3Backend):
    name = "s5cmd"

    def describe(self):
        return "s5cmd"

    def upload(self, transfers: List[Transfer], progress) -> Dict[str, str]:
        ours = [t for t in transfers if representable(t)]
        failed = super().upload([t for t in transfers if not representable(t)], progress)
        jobs = [(t, os.path.abspath(t.path), self.settings.url(t.key)) for t in ours]
        failed.update(self._run(jobs, progress))
        return failed

    def download(self, transfers: List[Transfer], progress, whole_prefix=None, local_root=".") -> Dict[str, str]:
        failed = {}
        if whole_prefix is not None:
            # what the wildcard copy did not deliver goes through the per-key path below
            transfers, failed = self._download_prefix(transfers, progress, whole_prefix, local_root)
        ours = [t for t in transfers if representable(t)]
        failed.update(super().download([t for t in transfers if not representable(t)], progress))
        jobs, temps = [], {}
        for t in ours:
            reason = prepare_folder(t.path)
            if reason:
                failed[t.key] = reason
                progress.advance(1)
                continue
            temps[t.key] = temp_path_for(os.path.abspath(t.path))
            jobs.append((t, self.settings.url(t.key), temps[t.key]))
        try:
            failed.update(self._run(jobs, progress))
            for t, _, tmp in jobs:
                if t.key not in failed:
                    self._finish(tmp, t, failed)
        finally:
            for tmp in temps.values():
                remove_quietly(tmp)       # failed or interrupted: no partial file stays
        return failed

    def _download_prefix(self, transfers, progress, prefix, local_root):
        """Every object under `prefix`: one wildcard copy into a staging folder next to the destination
        (a single LIST then one GET per object, where per-key copies cost a HEAD and a GET each), then
        each file is renamed into place. Returns (transfers still to do, failures)."""
        local_dir = local_path_for(prefix.rstrip("/"), local_root) if prefix else (local_root or ".")
        staging = temp_path_for(os.path.join(os.path.abspath(local_dir), "_"))
        failed = {}
        try:
            os.makedirs(staging)
        except OSError:
            return transfers, failed          # e.g. a file where the folder should be: per-key path reports it
        try:
            expected = {(self.settings.url(t.key), os.path.join(staging, *t.key[len(prefix):].split("/"))): t
                        for t in transfers}
            source, target = quote(self.settings.url(prefix) + "*"), quote(staging + "/")
            line = f"cp -p {self.settings.part_size_mb} {source} {target}\n"
            missing = self._run_lines([line], expected, progress, count_failures=False)
            for (_, staged), t in expected.items():
                if t.key not in missing:
                    self._finish(staged, t, failed)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return [t for t in transfers if t.key in missing], failed

    @staticmethod
    def _finish(tmp, t, failed):
        reason = prepare_folder(t.path)
        if reason:
            failed[t.key] = reason
            return
        try:
            finish_download(tmp, t)
        except OSError as err:
            failed[t.key] = f"cannot write {t.path}: {err.strerror or err}"

    # ------------------------------------------------------------ running s5cmd
    def _argv(self, command_file):
        argv = [self.settings.s5cmd_path, "--json", "--endpoint-url", self.settings.endpoint_url,
                "--retry-count", str(RETRY_COUNT)]
        if self.anonymous:
            argv.append("--no-sign-request")
        if os.environ.get("S3_WORKERS"):
            argv += ["--numworkers", str(self.settings.workers)]
        return argv + ["run", command_file]

    def _env(self):
        env = dict(os.environ)
        env["AWS_REGION"] = self.settings.region
        for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
            env.pop(name, None)
        creds = self.credentials()
        if creds is not None:      # the same identity boto3 resolved, whatever its source
            env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"] = creds[0], creds[1]
            if creds[2]:
                env["AWS_SESSION_TOKEN"] = creds[2]
        return env

    def _run(self, jobs, progress) -> Dict[str, str]:
        """Run `s5cmd run` over (transfer, source, destination) jobs; {key: reason} for failures."""
        if not jobs:
            return {}
        part_mb = self.settings.part_size_mb
        lines = [f"cp --raw -p {part_mb} {quote(src)} {quote(dst)}\n" for _, src, dst in jobs]
        return self._run_lines(lines, {(src, dst): t for t, src, dst in jobs}, progress)

    def _run_lines(self, lines, by_pair, progress, count_failures=True) -> Dict[str, str]:
        """Run a command file; by_pair maps the (source, destination) s5cmd reports to our transfers."""
        env = self._env()          # resolves credentials before the file is written
        fd, command_file = tempfile.mkstemp(prefix="toolbox-s5cmd-", suffix=".txt")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.writelines(lines)
            return self._execute(self._argv(command_file), env, by_pair, progress, count_failures)
        finally:
            remove_quietly(command_file)

    def _execute(self, argv, env, by_pair, progress, count_failures=True):
        done, errors, stray = set(), {}, []
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                env=env, text=True, encoding="utf-8", errors="replace")
        reader = threading.Thread(target=self._read_errors, args=(proc.stderr, by_pair, errors, stray),
                                  daemon=True)
        reader.start()
        try:
            for line in proc.stdout:
                record = _json_line(line)
                if not record or not record.get("success"):
                    if line.strip() and record is None:
                        stray.append(line.strip())
                    continue
                t = by_pair.get((record.get("source"), record.get("destination")))
                if t is not None and t.key not in done:
                    done.add(t.key)
                    progress.advance(1, int(record.get("object", {}).get("size", t.size) or 0))
            code = proc.wait()
            reader.join()
        except BaseException:
            _stop(proc)
            raise
        failed = {}
        for t in by_pair.values():
            if t.key in done:
                continue
            failed[t.key] = errors.get(t.key) or _exit_reason(code, stray)
            if count_failures:
                progress.advance(1)
        if code != 0 and not failed:   # s5cmd failed yet reported every transfer done: do not trust it
            failed = {t.key: _exit_reason(code, stray) for t in by_pair.values()}
        return failed

    @staticmethod
    def _read_errors(stream, by_pair, errors, stray):
        suffixes = {f" {src} {dst}": t for (src, dst), t in by_pair.items()}
        for line in stream:
            record = _json_line(line)
            if record is None or "error" not in record:
                if line.strip():
                    stray.append(line.strip())
                continue
            command = record.get("command", "")
            reason = _NOISE.sub("", str(record["error"])).strip()
            for suffix, t in suffixes.items():
                if command.endswith(suffix):
                    errors[t.key] = reason
                    break
            else:
                stray.append(reason)


def _json_line(line):
    line = line.strip()
    if not line.startswith("{"):
        return None
    try:
        return json.loads(line)
    except ValueError:
        return None


def _exit_reason(code, stray):
    tail = "; ".join(stray[-3:])
    head = f"s5cmd exited with status {code}" if code else "s5cmd reported no result for it"
    return head + (f": {tail}" if tail else "")


def _stop(proc):
    """Ctrl-C / SIGTERM while s5cmd runs: stop it before the temporary files are removed."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
