"""One progress line per demo step: child ``basicsr`` runs write their output to a log file, not to the terminal.

Each step's output (BasicSR's network printouts and per-iteration lines) goes to ``<workdir>/logs/<step>.log``. The
terminal shows the step's name, a bar, the iteration count and the ETA, read from BasicSR's iteration lines; on a
terminal the line updates in place, elsewhere (CI logs, files) one line is printed when the step ends. A failed step
prints the end of its log and raises :class:`subprocess.CalledProcessError`.
"""
import os
import re
import subprocess
import sys
import time
from os import path as osp

ITER_PATTERN = re.compile(r'\biter:\s*([\d,]+)')
BAR_WIDTH = 24
FAILED_LOG_TAIL = 25  # lines of the log shown when a step fails


def format_seconds(seconds):
    """``m:ss`` (or ``h:mm:ss``) of a duration in seconds."""
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f'{hours}:{minutes:02d}:{secs:02d}' if hours else f'{minutes}:{secs:02d}'


def progress_line(label, done, total, elapsed):
    """``label  [#####.....]  done/total it  ETA m:ss`` (without a bar when ``total`` is 0).

    Args:
        label (str): Step name.
        done (int): Iterations done.
        total (int): Iterations of the step; 0 for steps without iterations (tests).
        elapsed (float): Seconds since the step started.

    Returns:
        str: The line, without a newline.
    """
    if not total:
        return f'{label:<34} {format_seconds(elapsed)}'
    filled = BAR_WIDTH * done // total
    bar = '#' * filled + '.' * (BAR_WIDTH - filled)
    eta = f'ETA {format_seconds(elapsed / done * (total - done))}' if 0 < done < total else format_seconds(elapsed)
    return f'{label:<34} [{bar}] {done:>5}/{total} it  {eta}'


class StepRunner:
    """Runs the demo's child commands, each behind one progress line.

    Args:
        log_dir (str): Folder of the per-step logs (created).
        stream (file): Where progress goes. Default: ``sys.stdout``.
    """

    def __init__(self, log_dir, stream=None):
        self.log_dir = log_dir
        self.stream = stream or sys.stdout
        self.interactive = self.stream.isatty()
        os.makedirs(log_dir, exist_ok=True)

    def run(self, label, command, workdir, total_iters=0, log_name=None):
        """Run ``command`` in ``workdir`` behind a progress line; return the path of its log.

        Args:
            label (str): Step name shown on the line.
            command (list[str]): The child's argument vector.
            workdir (str): Its working folder.
            total_iters (int): Training iterations, for the bar and the ETA; 0 for steps without them. Default: 0.
            log_name (str | None): Log file name without extension. Default: ``label`` in snake case.

        Returns:
            str: The log file.

        Raises:
            subprocess.CalledProcessError: The command failed; the end of its log has been printed.
        """
        log_path = osp.join(self.log_dir, f"{log_name or re.sub(r'[^a-z0-9]+', '_', label.lower()).strip('_')}.log")
        start, done = time.time(), 0
        with open(
                log_path, 'w', encoding='utf-8', buffering=1) as log, subprocess.Popen(  # tail -f follows it
                    command,
                    cwd=workdir,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    text=True,
                    bufsize=1) as child:
            for line in child.stdout:
                log.write(line)
                match = ITER_PATTERN.search(line)
                if match:
                    done = max(done, int(match.group(1).replace(',', '')))
                    self._show(progress_line(label, done, total_iters, time.time() - start), final=False)
            returncode = child.wait()
        done = total_iters if returncode == 0 else done
        self._show(
            progress_line(label, done, total_iters,
                          time.time() - start) + ('' if returncode == 0 else '  FAILED'),
            final=True)
        if returncode:
            with open(log_path, encoding='utf-8') as log:
                tail = log.readlines()[-FAILED_LOG_TAIL:]
            self.stream.write(''.join(tail) + f'(full log: {log_path})\n')
            raise subprocess.CalledProcessError(returncode, command)
        return log_path

    def _show(self, line, final):
        if self.interactive:
            self.stream.write('\r' + line + ('\n' if final else ''))
        elif final:
            self.stream.write(line + '\n')
        self.stream.flush()
