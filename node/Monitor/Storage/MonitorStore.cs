using System.Buffers;
using System.Diagnostics;
using System.Globalization;
using System.Text;
using Appliance.Platform.Native;
using Appliance.Wire.Codec;
using Microsoft.Win32.SafeHandles;

namespace Appliance.Monitor.Storage;

/// <summary>Tuning of a <see cref="MonitorStore"/>.</summary>
public sealed record MonitorStoreOptions
{
    /// <summary>When the log grows past this many bytes, the writer compacts the state into a snapshot and starts a
    /// fresh log. Bounds the log on disk and the replay at open.</summary>
    public long CompactAfterLogBytes { get; init; } = 8 << 20;
}

/// <summary>Steps of a compaction, for tests that crash between them.</summary>
internal enum CompactionStep
{
    Start,
    SnapshotTempWritten,
    SnapshotRenamed,
    SnapshotDurable,
    LogTempWritten,
    LogRenamed,
    Done,
}

/// <summary>Counters of a store, for status output and tests.</summary>
public readonly record struct MonitorStoreStats(ulong LastSequence, ulong SnapshotSequence, long LogBytes, int Keys, long ValueBytes, long Compactions, long Flushes);

/// <summary>
/// The monitor's durable key/value store: a directory on the node's system disk holding
/// <list type="bullet">
/// <item><c>LOCK</c> — flock'ed while open (a second process is refused), holds the owner's pid;</item>
/// <item><c>log</c> — the write-ahead log (<see cref="LogFormat"/>): one checksummed, sequence-numbered record per
/// batch;</item>
/// <item><c>snapshot</c> — the whole state as of a sequence number (<see cref="SnapshotFormat"/>), absent until the
/// first compaction.</item>
/// </list>
/// Keys are (prefix, key) strings, ordered by ordinal comparison within a prefix. <see cref="Apply"/> makes a batch
/// durable and visible atomically: after a crash at any instant the batch is wholly there or wholly absent.
/// Concurrent callers are grouped by one writer thread into one write and one flush (group commit).
/// <para>Memory: the whole state lives in memory (monitor state is small: maps, keys, a trimmed Paxos log); the bound
/// is the state's size plus, at open, one read of the log file, which compaction keeps near
/// <see cref="MonitorStoreOptions.CompactAfterLogBytes"/> (plus at most one group of batches). Values are at most
/// 16 MiB, batches at most 64 MiB.</para>
/// </summary>
public sealed class MonitorStore : IDisposable
{
    private const string LockName = "LOCK";
    private const string LogName = "log";
    private const string SnapshotName = "snapshot";
    private const string TempSuffix = ".tmp";
    /// <summary>Most payload bytes one group commit writes (a single larger batch is written alone).</summary>
    private const long MaxGroupBytes = 16 << 20;
    private static readonly byte[] Zeros = new byte[1 << 20];

    /// <summary>How far the log file is grown ahead of its appends: an eighth of the compaction bound, 4 KiB to 1 MiB.</summary>
    private long PreallocateBytes => Math.Clamp(_options.CompactAfterLogBytes / 8, 4096, Zeros.Length);

    private readonly string _directory;
    private readonly MonitorStoreOptions _options;
    private readonly int _lockFd;
    private readonly Dictionary<string, SortedList<string, byte[]>> _state;
    private readonly Lock _stateLock = new();
    private readonly object _queueLock = new();
    // Held while a group is written and flushed, or a compaction runs (by the writer thread or an inline Apply).
    private readonly Lock _commitLock = new();
    private readonly Thread _writer;
    private readonly List<Pending> _queue = [];
    private bool _stopping;
    private SafeFileHandle _log;
    private long _logLength;
    // The log file's size: _logLength plus zeros written ahead of the appends (see CommitGroup).
    private long _logSize;
    private ulong _lastSeq;
    private ulong _snapshotSeq;
    private long _compactions;
    private long _flushes;
    private volatile MonitorStoreFailedException? _failed;
    private int _disposed;

    private sealed class Pending(WriteBatch? batch, byte[]? payload)
    {
        public WriteBatch? Batch { get; } = batch;
        public byte[]? Payload { get; } = payload;
        public TaskCompletionSource<ulong> Done { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
    }

    private MonitorStore(string directory, MonitorStoreOptions options, int lockFd, Dictionary<string, SortedList<string, byte[]>> state,
        SafeFileHandle log, long logLength, long logSize, ulong lastSeq, ulong snapshotSeq)
    {
        _directory = directory;
        _options = options;
        _lockFd = lockFd;
        _state = state;
        _log = log;
        _logLength = logLength;
        _logSize = logSize;
        _lastSeq = lastSeq;
        _snapshotSeq = snapshotSeq;
        _writer = new Thread(WriterLoop) { IsBackground = true, Name = "monitor-store-writer" };
    }

    /// <summary>The directory the store lives in.</summary>
    public string Directory => _directory;

    /// <summary>Notes from the open: a discarded torn tail, an interrupted compaction finished. Empty when clean.</summary>
    public IReadOnlyList<string> OpenNotes { get; private set; } = [];

    /// <summary>Test hook: called after a group's write and before its flush (on the writer thread, or the caller's for an
    /// inline <see cref="Apply"/>); throwing an
    /// <see cref="IOException"/> simulates a failed fsync (EIO).</summary>
    internal Action? BeforeFlushHook { get; set; }

    /// <summary>Test hook: called at each compaction step (under the commit lock); throwing simulates a crash there.</summary>
    internal Action<CompactionStep>? CompactionHook { get; set; }

    /// <summary>
    /// Opens the store in <paramref name="directory"/>, creating the directory and an empty store if missing. Replays
    /// the log over the snapshot; a torn tail is discarded (and truncated away), damage anywhere else raises
    /// <see cref="MonitorStoreCorruptionException"/>. Throws <see cref="MonitorStoreLockedException"/> if another process
    /// has it open.
    /// </summary>
    public static MonitorStore Open(string directory, MonitorStoreOptions? options = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(directory);
        options ??= new MonitorStoreOptions();
        directory = Path.GetFullPath(directory);
        System.IO.Directory.CreateDirectory(directory);
        var lockFd = AcquireLock(directory);
        SafeFileHandle? log = null;
        try
        {
            var notes = new List<string>();
            foreach (var leftover in new[] { SnapshotName + TempSuffix, LogName + TempSuffix })
            {
                // A temporary file is only ever renamed into place after it is complete and flushed; one that is
                // still here belongs to a compaction that did not finish, and the files it would replace are intact.
                var p = Path.Combine(directory, leftover);
                if (File.Exists(p))
                {
                    File.Delete(p);
                    notes.Add($"removed {leftover} of an interrupted compaction");
                }
            }
            var snapshotPath = Path.Combine(directory, SnapshotName);
            var logPath = Path.Combine(directory, LogName);
            ulong snapshotSeq = 0;
            var state = new Dictionary<string, SortedList<string, byte[]>>(StringComparer.Ordinal);
            if (File.Exists(snapshotPath))
            {
                (snapshotSeq, state) = SnapshotFormat.Decode(File.ReadAllBytes(snapshotPath), snapshotPath);
            }
            if (!File.Exists(logPath))
            {
                if (File.Exists(snapshotPath))
                {
                    throw new MonitorStoreCorruptionException(logPath, 0, "the log file is missing beside a snapshot");
                }
                WriteDurably(directory, LogName, LogFormat.Header(0));
                // A new store: make its directory's own entry durable too, or a crash could lose the whole store
                // after batches were acknowledged.
                if (Path.GetDirectoryName(directory) is { } parent)
                {
                    FsyncDirectory(parent);
                }
            }
            var bytes = File.ReadAllBytes(logPath);
            var scan = LogFormat.Scan(bytes, logPath);
            if (scan.BaseSeq > snapshotSeq)
            {
                throw new MonitorStoreCorruptionException(logPath, 12, $"the log starts after sequence {scan.BaseSeq} but the snapshot holds only up to {snapshotSeq}");
            }
            var lastSeq = snapshotSeq;
            foreach (var record in scan.Records)
            {
                if (record.Seq <= snapshotSeq)
                {
                    continue; // already in the snapshot (a compaction was interrupted before it replaced the log)
                }
                if (record.Seq != lastSeq + 1)
                {
                    throw new MonitorStoreCorruptionException(logPath, record.RecordOffset, $"record {record.Seq} follows snapshot {snapshotSeq} with a gap");
                }
                WriteBatch batch;
                try
                {
                    batch = WriteBatch.Decode(bytes.AsSpan(record.PayloadOffset, record.PayloadLength));
                }
                catch (WireFormatException e)
                {
                    throw new MonitorStoreCorruptionException(logPath, record.RecordOffset, $"record {record.Seq} has a valid checksum but does not decode: {e.Message}");
                }
                ApplyToState(state, batch);
                lastSeq = record.Seq;
            }
            log = File.OpenHandle(logPath, FileMode.Open, FileAccess.ReadWrite, FileShare.Read);
            if (scan.TornTail is not null)
            {
                // Cut the torn bytes off before anything is appended, so they can never be read as part of a later
                // record, and make the cut durable.
                RandomAccess.SetLength(log, scan.ValidLength);
                RandomAccess.FlushToDisk(log);
                notes.Add($"discarded a torn tail of the log: {scan.TornTail}");
            }
            var store = new MonitorStore(directory, options, lockFd, state, log, scan.ValidLength,
                scan.TornTail is null ? bytes.Length : scan.ValidLength, lastSeq, snapshotSeq);
            store._writer.Start();
            if (scan.BaseSeq != snapshotSeq)
            {
                notes.Add($"finished a compaction interrupted after its snapshot (sequence {snapshotSeq})");
                store.Compact();
            }
            store.OpenNotes = notes;
            return store;
        }
        catch
        {
            log?.Dispose();
            Posix.close(lockFd);
            throw;
        }
    }

    private static int AcquireLock(string directory)
    {
        var path = Path.Combine(directory, LockName);
        var fd = Posix.open(path, Constants.O_RDWR | Constants.O_CREAT, 0x180 /* 0600 */);
        try
        {
            // Retried for a moment: a process of ours that forks (Process.Start) lends every descriptor, this lock's
            // too, to the child until it execs (O_CLOEXEC closes it only then), so a fork racing with a close makes
            // the lock look held for a few milliseconds. A monitor that really holds it holds it for good.
            var deadline = Environment.TickCount64 + 1000;
            while (true)
            {
                try
                {
                    Posix.flock(fd, Constants.LOCK_EX | Constants.LOCK_NB, path);
                    break;
                }
                catch (PlatformBusyException) when (Environment.TickCount64 < deadline)
                {
                    Thread.Sleep(10);
                }
            }
        }
        catch (PlatformBusyException e)
        {
            string holder;
            try
            {
                var buffer = new byte[32];
                var n = Posix.pread(fd, buffer, 0, path);
                holder = n > 0 ? "pid " + Encoding.ASCII.GetString(buffer, 0, n).Trim() : "unknown pid";
            }
            catch (PlatformException)
            {
                holder = "unknown pid";
            }
            Posix.close(fd);
            throw new MonitorStoreLockedException(directory, holder, e);
        }
        catch
        {
            Posix.close(fd);
            throw;
        }
        Posix.ftruncate(fd, 0, path);
        Posix.pwrite(fd, Encoding.ASCII.GetBytes(Environment.ProcessId.ToString(CultureInfo.InvariantCulture) + "\n"), 0, path);
        return fd;
    }

    /// <summary>The value of (prefix, key), a copy, or null.</summary>
    public byte[]? Get(string prefix, string key)
    {
        ThrowIfUnusable(allowFailed: true);
        lock (_stateLock)
        {
            return _state.TryGetValue(prefix, out var keys) && keys.TryGetValue(key, out var value) ? (byte[])value.Clone() : null;
        }
    }

    /// <summary>True if (prefix, key) exists.</summary>
    public bool Contains(string prefix, string key)
    {
        ThrowIfUnusable(allowFailed: true);
        lock (_stateLock)
        {
            return _state.TryGetValue(prefix, out var keys) && keys.ContainsKey(key);
        }
    }

    /// <summary>
    /// Up to <paramref name="limit"/> entries of <paramref name="prefix"/> whose keys sort (ordinal) strictly after
    /// <paramref name="startAfter"/> (null: from the first), in key order. Values are copies.
    /// </summary>
    public IReadOnlyList<KeyValuePair<string, byte[]>> List(string prefix, string? startAfter = null, int limit = int.MaxValue)
    {
        ThrowIfUnusable(allowFailed: true);
        ArgumentOutOfRangeException.ThrowIfNegative(limit);
        var result = new List<KeyValuePair<string, byte[]>>();
        lock (_stateLock)
        {
            if (!_state.TryGetValue(prefix, out var keys))
            {
                return result;
            }
            var i = startAfter is null ? 0 : FirstAfter(keys.Keys, startAfter);
            for (; i < keys.Count && result.Count < limit; i++)
            {
                result.Add(new(keys.Keys[i], (byte[])keys.Values[i].Clone()));
            }
        }
        return result;
    }

    /// <summary>Like <see cref="List"/> but keys only (no value copies): for trimming and counting.</summary>
    public IReadOnlyList<string> ListKeys(string prefix, string? startAfter = null, int limit = int.MaxValue)
    {
        ThrowIfUnusable(allowFailed: true);
        ArgumentOutOfRangeException.ThrowIfNegative(limit);
        lock (_stateLock)
        {
            if (!_state.TryGetValue(prefix, out var keys))
            {
                return [];
            }
            var from = startAfter is null ? 0 : FirstAfter(keys.Keys, startAfter);
            var count = Math.Min(limit, keys.Count - from);
            var result = new string[count];
            for (var i = 0; i < count; i++)
            {
                result[i] = keys.Keys[from + i];
            }
            return result;
        }
    }

    /// <summary>The prefixes that hold at least one key, in ordinal order.</summary>
    public IReadOnlyList<string> Prefixes()
    {
        ThrowIfUnusable(allowFailed: true);
        lock (_stateLock)
        {
            return [.. _state.Where(kv => kv.Value.Count > 0).Select(kv => kv.Key).Order(StringComparer.Ordinal)];
        }
    }

    private static int FirstAfter(IList<string> keys, string startAfter)
    {
        int lo = 0, hi = keys.Count;
        while (lo < hi)
        {
            var mid = (lo + hi) >>> 1;
            if (string.CompareOrdinal(keys[mid], startAfter) <= 0)
            {
                lo = mid + 1;
            }
            else
            {
                hi = mid;
            }
        }
        return lo;
    }

    /// <summary>
    /// Makes <paramref name="batch"/> durable (written and flushed to the log) and visible, atomically, and returns
    /// its sequence number. Safe to call from several threads: batches waiting together share one write and one flush.
    /// An empty batch returns the current sequence without writing.
    /// </summary>
    public ulong Apply(WriteBatch batch)
    {
        if (Prepare(batch, out var current) is not { } pending)
        {
            return current;
        }
        // A caller that would wait anyway writes and flushes on its own thread when no one else is writing and
        // nothing is queued before it: no hand-off to the writer thread and back (two thread switches per batch, the
        // monitor loop's hot path). Holding the commit lock with an empty queue keeps arrival order: whatever is
        // queued later commits later. Callers that find a commit under way queue up and share the writer's next flush.
        if (_commitLock.TryEnter())
        {
            try
            {
                bool inline;
                lock (_queueLock)
                {
                    if (_stopping)
                    {
                        throw new ObjectDisposedException(nameof(MonitorStore));
                    }
                    inline = _queue.Count == 0;
                }
                if (inline)
                {
                    CommitGroup([pending]);
                    MaybeCompact([]);
                    return pending.Done.Task.GetAwaiter().GetResult();
                }
            }
            finally
            {
                _commitLock.Exit();
            }
        }
        return Enqueue(pending).GetAwaiter().GetResult();
    }

    /// <summary>The asynchronous form of <see cref="Apply"/>; the task completes when the batch is durable.</summary>
    public Task<ulong> ApplyAsync(WriteBatch batch) =>
        Prepare(batch, out var current) is { } pending ? Enqueue(pending) : Task.FromResult(current);

    /// <summary>Checks the store and encodes <paramref name="batch"/> for the log; null for an empty batch, which
    /// writes nothing (<paramref name="current"/> is then the current sequence).</summary>
    private Pending? Prepare(WriteBatch batch, out ulong current)
    {
        ArgumentNullException.ThrowIfNull(batch);
        ThrowIfUnusable(allowFailed: false);
        if (batch.Count == 0)
        {
            lock (_stateLock)
            {
                current = _lastSeq;
                return null;
            }
        }
        current = 0;
        using var w = new WireWriter(256);
        batch.Encode(w);
        return new Pending(batch, w.ToArray());
    }

    /// <summary>Writes the state into a fresh snapshot and starts an empty log now (the writer also does it on its own
    /// when the log grows past <see cref="MonitorStoreOptions.CompactAfterLogBytes"/>).</summary>
    public void Compact()
    {
        ThrowIfUnusable(allowFailed: false);
        Enqueue(new Pending(null, null)).GetAwaiter().GetResult();
    }

    private Task<ulong> Enqueue(Pending pending)
    {
        lock (_queueLock)
        {
            if (_stopping)
            {
                throw new ObjectDisposedException(nameof(MonitorStore));
            }
            _queue.Add(pending);
            System.Threading.Monitor.Pulse(_queueLock);
        }
        return pending.Done.Task;
    }

    public MonitorStoreStats Stats
    {
        get
        {
            lock (_stateLock)
            {
                return new MonitorStoreStats(_lastSeq, _snapshotSeq, Interlocked.Read(ref _logLength), _state.Values.Sum(k => k.Count),
                    _state.Values.Sum(k => k.Values.Sum(v => (long)v.Length)), Interlocked.Read(ref _compactions), Interlocked.Read(ref _flushes));
            }
        }
    }

    private void ThrowIfUnusable(bool allowFailed)
    {
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        if (!allowFailed && _failed is { } failed)
        {
            throw failed;
        }
    }

    private void WriterLoop()
    {
        while (true)
        {
            lock (_queueLock)
            {
                while (_queue.Count == 0 && !_stopping)
                {
                    System.Threading.Monitor.Wait(_queueLock);
                }
                if (_queue.Count == 0)
                {
                    return;
                }
            }
            // The group is taken and committed under the commit lock, so a synchronous caller committing inline
            // (Apply) never overtakes batches queued before it.
            lock (_commitLock)
            {
                WriteQueuedGroup();
            }
        }
    }

    private void WriteQueuedGroup()
    {
        List<Pending> group;
        lock (_queueLock)
        {
            if (_queue.Count == 0)
            {
                return;
            }
            // Take what is waiting, up to MaxGroupBytes of payload (at least one entry), so one write and the
            // buffer it needs stay bounded however many callers pile up.
            var take = 0;
            long bytes = 0;
            while (take < _queue.Count && (take == 0 || bytes + (_queue[take].Payload?.Length ?? 0) <= MaxGroupBytes))
            {
                bytes += _queue[take].Payload?.Length ?? 0;
                take++;
            }
            group = _queue.GetRange(0, take);
            _queue.RemoveRange(0, take);
        }
        // Batches first, in arrival order; an explicit compaction request runs after the batches queued before it.
        var batches = group.Where(p => p.Batch is not null).ToList();
        if (batches.Count > 0)
        {
            CommitGroup(batches);
        }
        MaybeCompact(group.Where(p => p.Batch is null).ToList());
    }

    /// <summary>Compacts when asked to or when the log has grown past its bound. Runs under the commit lock.</summary>
    private void MaybeCompact(List<Pending> compactRequests)
    {
        if (compactRequests.Count > 0 || (_failed is null && _logLength - LogFormat.HeaderSize > _options.CompactAfterLogBytes))
        {
            RunCompaction(compactRequests);
        }
    }

    private void CommitGroup(List<Pending> group)
    {
        if (_failed is { } failed)
        {
            group.ForEach(p => p.Done.TrySetException(failed));
            return;
        }
        var buffer = new ArrayBufferWriter<byte>(group.Sum(p => p.Payload!.Length + LogFormat.RecordHeaderSize));
        var seq = _lastSeq;
        foreach (var p in group)
        {
            LogFormat.AppendRecord(buffer, ++seq, p.Payload);
        }
        var end = _logLength + buffer.WrittenCount;
        var size = _logSize;
        try
        {
            RandomAccess.Write(_log, buffer.WrittenSpan, _logLength);
            if (end <= size)
            {
                // Inside the file: the blocks are allocated and initialised, so fdatasync has no metadata to
                // commit (an append that grows the file makes every fsync a filesystem journal commit too).
                BeforeFlushHook?.Invoke();
                Posix.fdatasync((int)_log.DangerousGetHandle(), Path.Combine(_directory, LogName));
            }
            else
            {
                // Grow the file by real zeros (not fallocate: unwritten extents would turn each later write into
                // a metadata change again) ahead of the next appends; one fsync covers the growth and the batch.
                size = end + PreallocateBytes;
                RandomAccess.Write(_log, Zeros.AsSpan(0, (int)(size - end)), end);
                BeforeFlushHook?.Invoke();
                RandomAccess.FlushToDisk(_log);
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            Fail(e);
            group.ForEach(p => p.Done.TrySetException(_failed!));
            return;
        }
        Interlocked.Increment(ref _flushes);
        Interlocked.Add(ref _logLength, buffer.WrittenCount);
        _logSize = size;
        var first = _lastSeq + 1;
        lock (_stateLock)
        {
            foreach (var p in group)
            {
                ApplyToState(_state, p.Batch!);
            }
            _lastSeq = seq;
        }
        for (var i = 0; i < group.Count; i++)
        {
            group[i].Done.TrySetResult(first + (ulong)i);
        }
    }

    private void Fail(Exception e) => _failed ??= new MonitorStoreFailedException(_directory, e);

    private void RunCompaction(List<Pending> requests)
    {
        if (_failed is { } failed)
        {
            requests.ForEach(p => p.Done.TrySetException(failed));
            return;
        }
        try
        {
            CompactNow();
            requests.ForEach(p => p.Done.TrySetResult(_lastSeq));
        }
        catch (Exception e)
        {
            // Whatever step failed, the files on disk are a consistent old or new state (each step is a complete
            // file or an atomic rename), but this process no longer knows which log it appends to: stop writing.
            Fail(e);
            requests.ForEach(p => p.Done.TrySetException(_failed!));
        }
    }

    private void CompactNow()
    {
        var hook = CompactionHook;
        hook?.Invoke(CompactionStep.Start);
        byte[] snapshot;
        ulong seq;
        lock (_stateLock)
        {
            seq = _lastSeq;
            snapshot = SnapshotFormat.Encode(seq, _state);
        }
        WriteFile(Path.Combine(_directory, SnapshotName + TempSuffix), snapshot);
        hook?.Invoke(CompactionStep.SnapshotTempWritten);
        File.Move(Path.Combine(_directory, SnapshotName + TempSuffix), Path.Combine(_directory, SnapshotName), overwrite: true);
        hook?.Invoke(CompactionStep.SnapshotRenamed);
        FsyncDirectory(_directory);
        hook?.Invoke(CompactionStep.SnapshotDurable);
        // The old log may now be replaced: every record in it is covered by the durable snapshot.
        WriteFile(Path.Combine(_directory, LogName + TempSuffix), LogFormat.Header(seq));
        hook?.Invoke(CompactionStep.LogTempWritten);
        File.Move(Path.Combine(_directory, LogName + TempSuffix), Path.Combine(_directory, LogName), overwrite: true);
        hook?.Invoke(CompactionStep.LogRenamed);
        FsyncDirectory(_directory);
        var fresh = File.OpenHandle(Path.Combine(_directory, LogName), FileMode.Open, FileAccess.ReadWrite, FileShare.Read);
        _log.Dispose();
        _log = fresh;
        Interlocked.Exchange(ref _logLength, LogFormat.HeaderSize);
        _logSize = LogFormat.HeaderSize;
        lock (_stateLock)
        {
            _snapshotSeq = seq;
        }
        Interlocked.Increment(ref _compactions);
        hook?.Invoke(CompactionStep.Done);
    }

    private static void WriteFile(string path, ReadOnlySpan<byte> bytes)
    {
        using var h = File.OpenHandle(path, FileMode.Create, FileAccess.Write, FileShare.None);
        RandomAccess.Write(h, bytes, 0);
        RandomAccess.FlushToDisk(h);
    }

    /// <summary>Writes a file under a temporary name, flushes it, renames it into place and flushes the directory.</summary>
    private static void WriteDurably(string directory, string name, ReadOnlySpan<byte> bytes)
    {
        var temp = Path.Combine(directory, name + TempSuffix);
        WriteFile(temp, bytes);
        File.Move(temp, Path.Combine(directory, name), overwrite: true);
        FsyncDirectory(directory);
    }

    /// <summary>The BCL cannot fsync a directory; the platform layer's open + fsync can (a rename is durable only
    /// once its directory is).</summary>
    private static void FsyncDirectory(string directory)
    {
        var fd = Posix.open(directory, Constants.O_RDONLY);
        try
        {
            Posix.fsync(fd, directory);
        }
        finally
        {
            Posix.close(fd);
        }
    }

    private static void ApplyToState(Dictionary<string, SortedList<string, byte[]>> state, WriteBatch batch)
    {
        foreach (var op in batch.Ops)
        {
            if (op.Value is { } value)
            {
                if (!state.TryGetValue(op.Prefix, out var keys))
                {
                    keys = new SortedList<string, byte[]>(StringComparer.Ordinal);
                    state.Add(op.Prefix, keys);
                }
                keys[op.Key] = value;
            }
            else if (state.TryGetValue(op.Prefix, out var keys) && keys.Remove(op.Key) && keys.Count == 0)
            {
                state.Remove(op.Prefix);
            }
        }
    }

    /// <summary>Stops the writer after the batches already queued, closes the log and releases the lock.</summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }
        lock (_queueLock)
        {
            _stopping = true;
            System.Threading.Monitor.Pulse(_queueLock);
        }
        if (!_writer.Join(TimeSpan.FromSeconds(60)))
        {
            Debug.Fail("monitor store writer did not stop");
        }
        lock (_commitLock)
        {
            _log.Dispose();
        }
        Posix.close(_lockFd);
    }
}
