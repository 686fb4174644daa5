//! Hostile and probing guests, as WAT (WASI preview-1 command modules).

/// Loops forever.
pub const INFINITE_LOOP: &str = r#"(module (func (export "_start") (loop (br 0))))"#;

/// Grows memory a page at a time until refused, then aborts like a Rust
/// guest whose allocator failed.
pub const MEMORY_BOMB: &str = r#"
(module (memory (export "memory") 1)
  (func (export "_start")
    (loop $l
      (if (i32.eq (memory.grow (i32.const 16)) (i32.const -1)) (then unreachable))
      (br $l))))"#;

/// Recurses without end.
pub const DEEP_RECURSION: &str = r#"
(module
  (func $f (param i64) (result i64) (call $f (i64.add (local.get 0) (i64.const 1))))
  (func (export "_start") (drop (call $f (i64.const 0)))))"#;

/// Traps at once.
pub const TRAP: &str = r#"(module (func (export "_start") unreachable))"#;

/// Declares 2 GiB of initial memory and a data segment at its end.
pub const HUGE_DATA: &str = r#"
(module (memory 32768)
  (data (i32.const 2147483000) "far away")
  (func (export "_start")))"#;

/// Grows a table by a million elements at a time.
pub const TABLE_BOMB: &str = r#"
(module (table 1 funcref)
  (func (export "_start")
    (loop $l
      (if (i32.eq (table.grow (ref.null func) (i32.const 1000000)) (i32.const -1)) (then unreachable))
      (br $l))))"#;

/// Writes 64 KiB to stdout forever.
pub const OUTPUT_FLOOD: &str = r#"
(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 2)
  (func (export "_start")
    ;; iovec at 0: buf = 1024, len = 65536
    (i32.store (i32.const 0) (i32.const 1024))
    (i32.store (i32.const 4) (i32.const 65536))
    (loop $l
      (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 16)))
      (br $l))))"#;

/// Probes the file system from `/scratch` (preopen fd 3): `..`, an absolute
/// path, and a symlink pointing out. Writes one byte per attempt to stdout:
/// the errno (0 would mean the escape worked). Also creates `left-behind.txt`
/// inside the scratch dir, which the host must remove after the task.
pub const SCRATCH_ESCAPE: &str = r#"
(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_open"
    (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_symlink"
    (func $path_symlink (param i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 100) "../../../../etc/passwd")  ;; 22 bytes
  (data (i32.const 200) "/etc/passwd")             ;; 11
  (data (i32.const 300) "/etc")                    ;; 4
  (data (i32.const 310) "out")                     ;; 3
  (data (i32.const 320) "out/passwd")              ;; 10
  (data (i32.const 340) "left-behind.txt")         ;; 15
  (data (i32.const 360) "..")                      ;; 2
  (func $open (param $p i32) (param $len i32) (param $oflags i32) (result i32)
    (call $path_open (i32.const 3) (i32.const 1) (local.get $p) (local.get $len)
      (local.get $oflags) (i64.const 0x1fffffff) (i64.const 0x1fffffff) (i32.const 0) (i32.const 500)))
  (func (export "_start")
    (i32.store8 (i32.const 1000) (call $open (i32.const 100) (i32.const 22) (i32.const 0)))
    (i32.store8 (i32.const 1001) (call $open (i32.const 200) (i32.const 11) (i32.const 0)))
    (drop (call $path_symlink (i32.const 300) (i32.const 4) (i32.const 3) (i32.const 310) (i32.const 3)))
    (i32.store8 (i32.const 1002) (call $open (i32.const 320) (i32.const 10) (i32.const 0)))
    (i32.store8 (i32.const 1003) (call $open (i32.const 360) (i32.const 2) (i32.const 2)))
    ;; create a file (O_CREAT = 1) that must not survive the task
    (drop (call $open (i32.const 340) (i32.const 15) (i32.const 1)))
    (i32.store (i32.const 0) (i32.const 1000))
    (i32.store (i32.const 4) (i32.const 4))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 16)))))"#;

/// Writes `n` MiB of zeros into `/scratch/big` (n = first stdin byte), then
/// traps if n is 3.
pub const SCRATCH_FILLER: &str = r#"
(module
  (import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_open"
    (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (memory (export "memory") 17)
  (data (i32.const 100) "big")
  (func (export "_start") (local $fd i32) (local $n i32) (local $orig i32)
    ;; read one byte of stdin into 200
    (i32.store (i32.const 0) (i32.const 200))
    (i32.store (i32.const 4) (i32.const 1))
    (drop (call $fd_read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 16)))
    (local.set $n (i32.load8_u (i32.const 200)))
    (local.set $orig (local.get $n))
    (if (call $path_open (i32.const 3) (i32.const 1) (i32.const 100) (i32.const 3) (i32.const 1)
          (i64.const 0x1fffffff) (i64.const 0x1fffffff) (i32.const 0) (i32.const 300))
      (then unreachable))
    (local.set $fd (i32.load (i32.const 300)))
    ;; iovec: 1 MiB of zeros at 65536
    (i32.store (i32.const 0) (i32.const 65536))
    (i32.store (i32.const 4) (i32.const 1048576))
    (block $done
      (loop $l
        (br_if $done (i32.eqz (local.get $n)))
        (drop (call $fd_write (local.get $fd) (i32.const 0) (i32.const 1) (i32.const 16)))
        (local.set $n (i32.sub (local.get $n) (i32.const 1)))
        (br $l)))
    (if (i32.eq (local.get $orig) (i32.const 3)) (then unreachable))))"#;

/// Reads the wall clock, the monotonic clock and 16 random bytes, and
/// writes them all to stdout (40 bytes).
pub const CLOCKS_AND_RANDOM: &str = r#"
(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "clock_time_get" (func $clock (param i32 i64 i32) (result i32)))
  (import "wasi_snapshot_preview1" "random_get" (func $random (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    (drop (call $clock (i32.const 0) (i64.const 1) (i32.const 104)))
    (drop (call $clock (i32.const 1) (i64.const 1) (i32.const 112)))
    (drop (call $random (i32.const 120) (i32.const 16)))
    (i32.store (i32.const 0) (i32.const 104))
    (i32.store (i32.const 4) (i32.const 32))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 16)))))"#;

/// A core module that is not a WASI command (no `_start`).
pub const NO_START: &str = r#"(module (func (export "main")))"#;

/// Exits with status 3 through WASI `proc_exit`.
pub const EXIT_3: &str = r#"
(module
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (func (export "_start") (call $exit (i32.const 3))))"#;

/// Looks in `/scratch` (preopen fd 3) for what earlier tasks may have left:
/// opens `left-behind.txt` (which [`SCRATCH_ESCAPE`] creates) and the
/// directory `out`, without creating them, and writes the two errnos to
/// stdout (0 would mean an earlier task's file is visible).
pub const SCRATCH_PROBE: &str = r#"
(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_open"
    (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 310) "out")                     ;; 3
  (data (i32.const 340) "left-behind.txt")         ;; 15
  (func $open (param $p i32) (param $len i32) (result i32)
    (call $path_open (i32.const 3) (i32.const 0) (local.get $p) (local.get $len)
      (i32.const 0) (i64.const 0x1fffffff) (i64.const 0x1fffffff) (i32.const 0) (i32.const 500)))
  (func (export "_start")
    (i32.store8 (i32.const 1000) (call $open (i32.const 340) (i32.const 15)))
    (i32.store8 (i32.const 1001) (call $open (i32.const 310) (i32.const 3)))
    (i32.store (i32.const 0) (i32.const 1000))
    (i32.store (i32.const 4) (i32.const 2))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 16)))))"#;

/// Sleeps an hour with `poll_oneoff` (one relative monotonic clock
/// subscription), then checks that the monotonic clock moved by at least an
/// hour and that the event came back, and prints "ok"; traps otherwise.
pub const SLEEP_AN_HOUR: &str = r#"
(module
  (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "clock_time_get" (func $now (param i32 i64 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "_start") (local $t0 i64)
    (drop (call $now (i32.const 1) (i64.const 1) (i32.const 504)))
    (local.set $t0 (i64.load (i32.const 504)))
    (i64.store (i32.const 0) (i64.const 42))
    (i32.store8 (i32.const 8) (i32.const 0))
    (i32.store (i32.const 16) (i32.const 1))
    (i64.store (i32.const 24) (i64.const 3600000000000))
    (i32.store16 (i32.const 40) (i32.const 0))
    (if (i32.ne (call $poll (i32.const 0) (i32.const 104) (i32.const 1) (i32.const 200)) (i32.const 0))
      (then unreachable))
    (drop (call $now (i32.const 1) (i64.const 1) (i32.const 504)))
    (if (i64.lt_u (i64.sub (i64.load (i32.const 504)) (local.get $t0)) (i64.const 3600000000000))
      (then unreachable))
    (if (i64.ne (i64.load (i32.const 104)) (i64.const 42)) (then unreachable))
    (if (i32.ne (i32.load (i32.const 200)) (i32.const 1)) (then unreachable))
    (i32.store (i32.const 300) (i32.const 400))
    (i32.store (i32.const 304) (i32.const 2))
    (i32.store16 (i32.const 400) (i32.const 0x6b6f))
    (drop (call $fd_write (i32.const 1) (i32.const 300) (i32.const 1) (i32.const 308)))))"#;
