"""The s5cmd backend: one s5cmd process moves a whole batch of explicit transfers.

An upload is one wildcard copy of a temporary folder of symbolic links, one per file at its key; a
download of everything under a prefix one wildcard copy into a staging folder; what either did not
deliver, and every other batch, goes to `s5cmd run` on its standard input (no command file to leave
behind), one quoted `cp --raw` line per transfer, so names are data, never shell; results and errors are read from
s5cmd's `--json` lines as they stream, and its exit status is checked. Credentials and the endpoint
travel in the child's environment, never on its command line. Names a command line cannot carry (a
newline) go through the boto3 backend, which shares this backend's client.

Quoting: `s5cmd run` splits each line with go-shellquote, a POSIX-shell word splitter without
expansion or globbing, so shlex.quote is exactly right (checked with the real binary on names with
spaces, quotes, `*`, `?`, `$`, backticks and backslashes: tests/integration/test_s3_contract.py, row 11).
"""
from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import tempfile
import threading
from typing import Dict, List, Optional

from toolbox.s3.backends.base import (Abandon, Backend, GiveUp, finish_download, prepare_folder, remove_quietly,
                                      retry_attempts, temp_path_for)
from toolbox.s3.backends.boto import Boto3Backend
from toolbox.s3.paths import Transfer, local_path_for
from toolbox.s3.settings import redact_url_credentials

# s5cmd (aws-sdk-go's default retryer) waits 30 ms before the first retry of a connection error or a 5xx,
# up to twice that with jitter, doubling each time (throttled requests: from 0.5 s)
S5CMD_FIRST_DELAY = 0.06
STOP_WAIT = 1.0                  # seconds s5cmd gets to exit after SIGTERM before SIGKILL
POLL = 0.2
_NOISE = re.compile(r"\s*status code: .*$")     # request ids etc. after the S3 error message


def representable(transfer):
    """Can this transfer be written as one line of s5cmd's input? (newlines cannot)"""
    names = transfer.key + transfer.path
    if "\n" in names or "\r" in names:
        return False
    try:
        names.encode("utf-8")
    except UnicodeEncodeError:      # undecodable local file names: s5cmd would print them mangled
        return False
    return True


class S5cmdBackend(Backend):
    name = "s5cmd"

    def __init__(self, settings, connection=None):
        super().__init__(settings, connection)
        self._boto3 = None

    def _other_names(self):
        """The boto3 backend on the same client, for names s5cmd cannot carry."""
        if self._boto3 is None:
            self._boto3 = Boto3Backend(self.settings, self.connection)
        return self._boto3

    def upload(self, transfers: List[Transfer], progress, abandon: Optional[Abandon] = None) -> Dict[str, str]:
        give_up = GiveUp(abandon)
        others = [t for t in transfers if not representable(t)]
        failed = self._other_names().upload(others, progress, abandon) if others else {}
        # what the wildcard copy did not deliver goes through the per-key path below
        ours = self._upload_links([t for t in transfers if representable(t)], progress, give_up)
        if give_up.reason:                  # the endpoint is gone: no per-key retry of everything
            for t in ours:
                failed[t.key] = give_up.not_done()
                progress.advance(1)
            return failed
        jobs = [(t, os.path.abspath(t.path), self.settings.url(t.key)) for t in ours]
        failed.update(self._run(jobs, progress, give_up))
        return failed

    def _upload_links(self, transfers, progress, give_up):
        """Every file as a symbolic link at its key in a temporary folder, then ONE wildcard copy of that
        folder to the bucket root (s5cmd follows the links): a `cp` line per file costs s5cmd about twice
        the CPU of the same files in one wildcard copy. Returns the transfers still to do."""
        if not transfers:
            return transfers
        try:
            links = tempfile.mkdtemp(prefix="toolbox-s5cmd-", dir=_memory_folder())
        except OSError:
            return transfers
        try:
            expected, folders = {}, {links}
            for t in transfers:
                link = os.path.join(links, *t.key.split("/"))
                if os.path.dirname(link) not in folders:
                    os.makedirs(os.path.dirname(link), exist_ok=True)
                    folders.add(os.path.dirname(link))
                os.symlink(os.path.abspath(t.path), link)
                expected[(link, self.settings.url(t.key))] = t
            source, target = shlex.quote(links + "/*"), shlex.quote(self.settings.url())
            line = f"cp -p {self.settings.part_size_mb} {source} {target}\n"
            missing = self._run_lines([line], expected, progress, give_up, count_failures=False)
        except OSError:
            return transfers                    # no links here (a file system without them): per key
        finally:
            shutil.rmtree(links, ignore_errors=True)
        return [t for t in transfers if t.key in missing]

    def download(self, transfers: List[Transfer], progress, whole_prefix=None, local_root=".",
                 abandon: Optional[Abandon] = None) -> Dict[str, str]:
        give_up = GiveUp(abandon)
        failed = {}
        if whole_prefix is not None:
            # what the wildcard copy did not deliver goes through the per-key path below
            transfers, failed = self._download_prefix(transfers, progress, whole_prefix, local_root, give_up)
        if give_up.reason:                  # the endpoint is gone: no per-key retry of everything
            for t in transfers:
                failed[t.key] = give_up.not_done()
                progress.advance(1)
            return failed
        others = [t for t in transfers if not representable(t)]
        if others:
            failed.update(self._other_names().download(others, progress, abandon=abandon))
        jobs, temps = [], {}
        for t in transfers:
            if not representable(t):
                continue
            reason = prepare_folder(t.path)
            if reason:
                failed[t.key] = reason
                progress.advance(1)
                continue
            temps[t.key] = temp_path_for(os.path.abspath(t.path))
            jobs.append((t, self.settings.url(t.key), temps[t.key]))
        try:
            failed.update(self._run(jobs, progress, give_up))
            for t, _, tmp in jobs:
                if t.key not in failed:
                    self._finish(tmp, t, failed)
        finally:
            for tmp in temps.values():
                remove_quietly(tmp)       # failed or interrupted: no partial file stays
        return failed

    def _download_prefix(self, transfers, progress, prefix, local_root, give_up):
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
            source, target = shlex.quote(self.settings.url(prefix) + "*"), shlex.quote(staging + "/")
            line = f"cp -p {self.settings.part_size_mb} {source} {target}\n"
            missing = self._run_lines([line], expected, progress, give_up, count_failures=False)
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
    def _argv(self):
        retries = retry_attempts(self.settings.retry_seconds, S5CMD_FIRST_DELAY) - 1
        argv = [self.settings.s5cmd_path, "--json", "--retry-count", str(retries)]
        if self.anonymous:
            argv.append("--no-sign-request")
        if os.environ.get("S3_WORKERS"):
            argv += ["--numworkers", str(self.settings.workers)]
        return argv + ["run"]

    def _env(self):
        env = dict(os.environ)
        env["AWS_REGION"] = self.settings.region
        env["S3_ENDPOINT_URL"] = self.settings.endpoint_url
        for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
            env.pop(name, None)
        creds = self.credentials()
        if creds is not None:      # the same identity boto3 resolved, whatever its source
            env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"] = creds[0], creds[1]
            if creds[2]:
                env["AWS_SESSION_TOKEN"] = creds[2]
        return env

    def _run(self, jobs, progress, give_up) -> Dict[str, str]:
        """Run `s5cmd run` over (transfer, source, destination) jobs; {key: reason} for failures."""
        if not jobs:
            return {}
        part_mb = self.settings.part_size_mb
        lines = [f"cp --raw -p {part_mb} {shlex.quote(src)} {shlex.quote(dst)}\n" for _, src, dst in jobs]
        return self._run_lines(lines, {(src, dst): t for t, src, dst in jobs}, progress, give_up)

    def _run_lines(self, lines, by_pair, progress, give_up, count_failures=True) -> Dict[str, str]:
        """Run s5cmd over command lines; by_pair maps the (source, destination) s5cmd reports to our
        transfers. It is stopped early when the endpoint stops answering or `give_up` says so."""
        env = self._env()          # resolves credentials before s5cmd starts
        done, errors, stray, finished = set(), {}, [], threading.Event()
        proc = subprocess.Popen(self._argv(), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                env=env, text=True, encoding="utf-8", errors="replace")
        helpers = [threading.Thread(target=_feed, args=(proc.stdin, lines), daemon=True),
                   threading.Thread(target=self._read_errors, args=(proc.stderr, by_pair, errors, stray, give_up),
                                    daemon=True),
                   threading.Thread(target=_watch, args=(proc, give_up, finished), daemon=True)]
        for thread in helpers:
            thread.start()
        try:
            for line in proc.stdout:
                record = _json_line(line)
                if not record or not record.get("success"):
                    if line.strip() and record is None:
                        stray.append(redact_url_credentials(line.strip()))
                    continue
                t = by_pair.get((record.get("source"), record.get("destination")))
                if t is not None and t.key not in done:
                    done.add(t.key)
                    progress.advance(1, int(record.get("object", {}).get("size", t.size) or 0))
            code = proc.wait()
            helpers[1].join()
        except BaseException:
            _stop(proc)
            raise
        finally:
            finished.set()                # ends the watcher
        failed = {}
        for t in by_pair.values():
            if t.key in done:
                continue
            failed[t.key] = errors.get(t.key) or (give_up.not_done() if give_up.reason else _exit_reason(code, stray))
            if count_failures:
                progress.advance(1)
        if code != 0 and not failed:   # s5cmd failed yet reported every transfer done: do not trust it
            failed = {t.key: _exit_reason(code, stray) for t in by_pair.values()}
        return failed

    @staticmethod
    def _read_errors(stream, by_pair, errors, stray, give_up):
        suffixes = {f" {src} {dst}": t for (src, dst), t in by_pair.items()}
        for line in stream:
            record = _json_line(line)
            if record is None or "error" not in record:
                if line.strip():
                    stray.append(redact_url_credentials(line.strip()))
                continue
            command = record.get("command", "")
            reason = redact_url_credentials(_NOISE.sub("", str(record["error"])).strip())
            give_up.note_failure(reason)
            for suffix, t in suffixes.items():
                if command.endswith(suffix):
                    errors[t.key] = reason
                    break
            else:
                stray.append(reason)


def _memory_folder():
    """A RAM-backed folder for the links when there is one (/dev/shm): a symbolic link costs ~5 us there,
    and up to a millisecond on a busy ext4 disk, where 1,000 of them would cost more than they save."""
    shm = "/dev/shm"
    return shm if os.path.isdir(shm) and os.access(shm, os.W_OK | os.X_OK) else None


def _feed(stdin, lines):
    """Write the command lines to s5cmd, then close its input (it ends once every line is done)."""
    try:
        with stdin:
            stdin.writelines(lines)
    except (BrokenPipeError, ValueError, OSError):     # s5cmd stopped early: its exit status tells why
        pass


def _watch(proc, give_up, finished):
    """Stop s5cmd as soon as the batch should stop (the endpoint is gone, a deadline, the monitor stopping)."""
    while not finished.is_set():
        if give_up.check() is not None:
            _stop(proc)
            return
        finished.wait(POLL)


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
    """Ctrl-C / SIGTERM / giving up while s5cmd runs: stop it before the temporary files are removed."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=STOP_WAIT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
