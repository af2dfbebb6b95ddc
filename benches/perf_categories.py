"""Splits a `perf record --call-graph dwarf` profile of one `transfer cp` into cost categories (see PROFILE.md).

    perf script -i FILE.data | python3 benches/perf_categories.py

Each sample goes to the first category whose pattern matches its stack (leaf first for the leaf rules, then any
frame), so the shares add up to 100% of the client's sampled CPU time.
"""
import re
import sys
from collections import Counter

# (category, where to look: "leaf" = the sampled function only, "any" = any frame of the stack, regex)
RULES = [
    ("zeroing part buffers (vec![0; n] in read_at)", "both", (r"memset", r"read_at")),
    ("blake3 fingerprint", "any", r"blake3"),
    ("CRC-64", "any", r"crc64"),
    ("CRC-32C (S3 body checksum)", "any", r"crc32c"),
    ("MD5 (Content-MD5)", "any", r"md5|Md5"),
    ("SHA-256 / HMAC (request signing, payload hash)", "any", r"sha2::|hmac|sha256"),
    ("ledger (SQLite, rusqlite, checkpoint)", "any", r"sqlite|rusqlite|checkpoint::"),
    ("file read (read_at, kernel copy to user)", "any", r"read_at|tokio::fs|ksys_read|vfs_read|ksys_pread|__x64_sys_pread"),
    ("file write (pwrite, kernel copy from user)", "any", r"write_at|__x64_sys_pwrite64|ksys_pwrite|vfs_write"),
    ("writeback started (fadvise)", "any", r"fadvise"),
    ("fsync before the rename", "any", r"fsync|fdatasync"),
    ("directory walk, open, stat", "any", r"walkdir|read_dir|statx|do_sys_open|getdents|__x64_sys_openat"),
    ("socket send (kernel TCP)", "any", r"tcp_sendmsg|sock_sendmsg|__x64_sys_sendto|__x64_sys_write|do_writev"),
    ("socket receive / poll (kernel)", "any", r"tcp_recvmsg|ep_poll|epoll_wait|__x64_sys_recvfrom"),
    ("HTTP client (hyper, reqwest, XML)", "any", r"hyper|reqwest|h2::|quick_xml|http::"),
    ("thread park / wake (futex, scheduler)", "any", r"futex|schedule|park|Condvar|finish_task_switch|try_to_wake_up"),
    ("page faults (fresh buffers)", "any", r"exc_page_fault|handle_mm_fault|clear_page"),
    ("malloc / free", "any", r"malloc|_int_free|cfree|malloc_consolidate"),
]


def classify(stack):
    leaf = stack[0] if stack else ""
    for name, where, pat in RULES:
        if where == "both":
            if re.search(pat[0], leaf) and any(re.search(pat[1], f) for f in stack):
                return name
        elif where == "leaf":
            if re.search(pat, leaf):
                return name
        elif any(re.search(pat, f) for f in stack):
            return name
    return "other"


def samples(lines):
    stack = None
    for line in lines:
        if not line.strip():
            if stack is not None:
                yield stack
            stack = None
            continue
        if not line.startswith((" ", "\t")):
            stack = []
            continue
        if stack is not None:
            parts = line.strip().split(None, 1)
            sym = parts[1] if len(parts) > 1 else parts[0]
            stack.append(re.sub(r"\+0x[0-9a-f]+$", "", re.sub(r"\s+\(.*\)$", "", sym)))
    if stack is not None:
        yield stack


LEDGER_PARTS = [
    ("SQL compile (sqlite3_prepare: statement not cached)", r"sqlite3Prepare|sqlite3RunParser|yy_reduce|sqlite3LockAndPrepare"),
    ("fsync", r"fsync|fdatasync|jbd2|ext4_sync"),
    ("WAL / database write syscalls", r"__x64_sys_pwrite|__x64_sys_write|ksys_pwrite|vfs_write|ext4"),
    ("statement execution (VDBE, B-tree)", r"sqlite3VdbeExec|sqlite3_step"),
    ("lock hand-offs (futex, scheduler) inside ledger calls", r"futex|schedule|Condvar|park"),
]


def main():
    counts = Counter()
    leaves = Counter()
    ledger = Counter()
    ledger_fns = Counter()
    total = 0
    for st in samples(sys.stdin):
        total += 1
        cat = classify(st)
        counts[cat] += 1
        if st:
            leaves[st[0][:90]] += 1
        if cat.startswith("ledger"):
            joined = " | ".join(st)
            ledger[next((n for n, p in LEDGER_PARTS if re.search(p, joined)), "other ledger")] += 1
            fn = next((f for f in st if re.search(r"checkpoint::.*::[a-z_]+$", f) and "closure" not in f), None)
            if fn:
                ledger_fns[re.sub(r"<impl [^>]*>::", "", fn)] += 1
    if not total:
        sys.exit("no samples")
    print(f"{total} samples\n")
    print("| category | share of client CPU |\n|---|---:|")
    for name, n in counts.most_common():
        print(f"| {name} | {100.0 * n / total:.1f}% |")
    if ledger:
        print("\n| inside the ledger | share of client CPU |\n|---|---:|")
        for name, n in ledger.most_common():
            print(f"| {name} | {100.0 * n / total:.1f}% |")
        print("\n| ledger call (inclusive) | share of client CPU |\n|---|---:|")
        for name, n in ledger_fns.most_common(6):
            print(f"| `{name}` | {100.0 * n / total:.1f}% |")
    print("\n| top functions (self) | share |\n|---|---:|")
    for name, n in leaves.most_common(15):
        print(f"| `{name}` | {100.0 * n / total:.1f}% |")


if __name__ == "__main__":
    main()
