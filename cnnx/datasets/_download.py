"""Downloads of the examples' data sets through pooch: checksums, retries, no partial file.

:func:`fetch` puts one file into a folder with :class:`pooch.Pooch`, which downloads it to a
temporary file beside the target, checks its hash and only then renames it (the temporary file is
deleted on any failure), and retries a transfer that broke off or came back damaged. On top of
pooch it gives every failure one clear message:

- the server cannot be reached (no network, an unknown host, a refused connection): no retry, the
  next mirror is tried, and the error says where to put a manually downloaded file;
- a wrong checksum: the error names the file and both hashes;
- a full disk: one OSError naming the file.
"""
import contextlib
import hashlib
import logging
import os
import sys

import pooch
import requests
from tqdm import tqdm

#: Download attempts after the first that pooch makes for a broken transfer or a wrong checksum.
RETRIES = 2
#: Bytes per read from the server (pooch's default, 1 KiB, is slow for a 163 MB archive).
_CHUNK = 1 << 20


class _NoRetry(Exception):
    """A failure that retrying cannot mend, raised past pooch's retry loop (which ignores it): the
    server could not be reached at all (``unreachable``), or it refused the request (HTTP 4xx)."""

    def __init__(self, error, unreachable):
        super().__init__(str(error))
        self.error = error
        self.unreachable = unreachable


class _Bar:
    """The progress bar handed to pooch: a tqdm named after the file, made only once the server
    answers (pooch then sets ``total`` from Content-Length), so an unreachable server shows none,
    and closed even when the transfer fails."""

    def __init__(self, name):
        self.name = name
        self.bar = None

    @property
    def total(self):
        return self.bar.total if self.bar is not None else None

    @total.setter
    def total(self, total):
        self.close()
        self.bar = tqdm(total=total or None, desc=self.name, unit="B", unit_scale=True)

    def update(self, n):
        self.bar.update(n)

    def reset(self):
        if self.bar.total is not None:  # else keep the count: pooch's total of 0 means unknown
            self.bar.reset()

    def close(self):
        if self.bar is not None:
            self.bar.close()


class _Downloader:
    """pooch's HTTPDownloader, with a progress bar named after the file, remembering the hash of
    what it received, telling unreachable servers (nothing received) and refused requests from
    transfers that broke off, and saying why it tries again."""

    def __init__(self, name, algorithm, expected, timeout, progress):
        self.name = name
        self.algorithm = algorithm
        self.expected = expected
        self.timeout = timeout
        self.progress = progress
        self.received_hash = None
        self.failure = None  # why the previous attempt failed
        self.attempt = 0

    def __call__(self, url, output_file, pooch_instance):
        self.attempt += 1
        if self.failure is not None and self.progress:
            print(f"{self.name}: {self.failure}; trying again (attempt {self.attempt})",
                  file=sys.stderr)
        self.received_hash = None
        bar = _Bar(self.name) if self.progress else False
        http = pooch.HTTPDownloader(progressbar=bar, chunk_size=_CHUNK, timeout=self.timeout)
        try:
            http(url, output_file, pooch_instance)
        except requests.exceptions.ConnectionError as error:
            if os.path.getsize(output_file) == 0:
                raise _NoRetry(error, unreachable=True) from error
            self.failure = f"the download from {url} broke off ({_reason(error)})"
            raise
        except requests.exceptions.HTTPError as error:
            status = error.response.status_code if error.response is not None else 500
            if 400 <= status < 500:
                raise _NoRetry(error, unreachable=False) from error
            self.failure = f"{url} answered {_reason(error)}"
            raise
        except requests.exceptions.RequestException as error:
            self.failure = f"the download from {url} broke off ({_reason(error)})"
            raise
        finally:
            if bar:
                bar.close()
        digest = hashlib.new(self.algorithm)
        with open(output_file, "rb") as stream:
            while block := stream.read(_CHUNK):
                digest.update(block)
        self.received_hash = digest.hexdigest()
        if self.received_hash != self.expected:  # pooch raises ValueError next
            self.failure = f"the file from {url} arrived with the wrong {self.algorithm.upper()}"


def _reason(error):
    """A short reason for a failed request: ``HTTP 404 Not Found``, ``[Errno 111] Connection
    refused``, ``IncompleteRead(...)``... rather than urllib3's nested reprs."""
    if isinstance(error, requests.exceptions.HTTPError) and error.response is not None:
        return f"HTTP {error.response.status_code} {error.response.reason}"
    chain, seen = [], set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        chain.append(error)
        error = error.__cause__ or error.__context__
    for link in reversed(chain):
        if isinstance(link, OSError) and link.strerror:
            return str(link)
    for link in reversed(chain):
        if str(link):
            return str(link)
    return type(chain[-1]).__name__


@contextlib.contextmanager
def _quiet_pooch():
    """Silence pooch's log ('Downloading file ...', 'Will attempt the download again ...'): the
    progress bar names the file and the downloader says why it tries again."""
    logger = pooch.get_logger()
    saved = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(saved)


def fetch(urls, folder, name, known_hash, fname, what, where, timeout=60.0, progress=True,
          retries=RETRIES):
    """Download ``name`` into ``folder`` from the first of ``urls`` that works; return its path.

    ``known_hash`` is pooch's ``'md5:HEX'`` or ``'sha256:HEX'``. A file already there with that
    hash is not downloaded again. ``fname`` starts the messages (``'cifar10'``), ``what`` names the
    content in them (``'CIFAR-10'``) and ``where`` ends them: what to do by hand (``'download URL
    yourself and put it in FOLDER'``). Raises RuntimeError when no url gives the file, OSError
    when it cannot be written; nothing partial is left either way.
    """
    folder = os.path.abspath(os.fspath(folder))
    algorithm, expected = known_hash.split(":")
    unreachable, failures = [], []
    for url in urls:
        downloader = _Downloader(name, algorithm, expected.lower(), timeout, progress)
        store = pooch.create(path=folder, base_url="", registry={name: known_hash},
                             urls={name: url}, retry_if_failed=retries)
        try:
            with _quiet_pooch():
                return store.fetch(name, downloader=downloader)
        except _NoRetry as error:
            if error.unreachable:
                unreachable.append((url, _reason(error.error)))
            else:
                failures.append(f"could not download {url} ({_reason(error.error)})")
        except ValueError:  # pooch: the hash does not match, after every retry
            failures.append(f"the file downloaded from {url} has {algorithm.upper()} "
                            f"{downloader.received_hash}, expected {expected} (corrupted or not "
                            f"{what})")
        except requests.exceptions.RequestException as error:  # an OSError too: test it first
            failures.append(f"could not download {url} ({_reason(error)})")
        except OSError as error:
            reason = error.strerror or str(error)
            raise OSError(error.errno, f"{fname}: could not write {name} in {folder}: {reason}; "
                                       "nothing was saved") from None
    if failures:
        reasons = "; ".join(failures + [f"could not reach {url} ({reason})"
                                        for url, reason in unreachable])
        raise RuntimeError(f"{fname}: {reasons}; nothing was saved. Try again, or {where}")
    if len(unreachable) == 1:
        tried = f"{unreachable[0][0]} ({unreachable[0][1]})"
    elif len({reason for _, reason in unreachable}) == 1:
        tried = f"{name} from {' or '.join(url for url, _ in unreachable)} ({unreachable[0][1]})"
    else:
        tried = f"{name} from " + " or ".join(f"{url} ({reason})" for url, reason in unreachable)
    raise RuntimeError(f"{fname}: could not download {tried}; nothing was saved. To work "
                       f"offline, {where}")
