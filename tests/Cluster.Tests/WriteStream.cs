using System.Collections.Concurrent;
using System.Diagnostics;
using Appliance.Client;
using Appliance.Osd.Protocol;
using Appliance.Platform.Checksums;

namespace Appliance.Cluster.Tests;

/// <summary>One write's outcome: when it started and ended (Stopwatch ticks), the object, its size, and its error if it
/// failed.</summary>
public sealed record WriteOutcome(long Started, long Ended, string Name, Exception? Error, int Length = 0)
{
    public bool Acknowledged => Error is null;
}

/// <summary>
/// A stream of writes through the real cluster client: <c>streams</c> writers, each writing objects of its own
/// (so each object's writes are sequential and "the newest acknowledged" is well defined) with random content of
/// 1-16 KiB (or up to <c>maxBytes</c>): mostly fresh objects (<c>PREFIX-sN-SEQ</c>, so every acknowledged write can be read back at the end),
/// every fourth an overwrite of the writer's hot object (<c>PREFIX-sN-hot</c>). Per object it records the checksum
/// of the newest acknowledged content and, for writes that failed after it, the checksums they would leave (a
/// failed write may or may not have been applied). With <see cref="VerifyReads"/> on, each writer reads back its
/// hot object and one of its fresh objects after every write and compares: with no write of its own in flight, a
/// read must return exactly the newest acknowledged content.
/// </summary>
public sealed class WriteStream : IAsyncDisposable
{
    private sealed class ObjectState
    {
        public uint Acked;
        public int Length;
        /// <summary>Checksums of writes that failed since the newest acknowledged one.</summary>
        public readonly HashSet<uint> Uncertain = [];
    }

    private readonly IoContext _io;
    private readonly TimeSpan _timeout;
    private readonly int _minBytes;
    private readonly int _maxBytes;
    private readonly ConcurrentDictionary<string, ObjectState> _objects = new();
    private readonly ConcurrentQueue<WriteOutcome> _outcomes = new();
    private readonly ConcurrentQueue<string> _readProblems = new();
    private readonly CancellationTokenSource _stop = new();
    private readonly Task[] _writers;
    private long _verifiedReads;

    public WriteStream(IoContext io, string prefix, int seed, int streams, TimeSpan timeout, int minBytes = 1024, int maxBytes = 16 * 1024)
    {
        _io = io;
        _timeout = timeout;
        _minBytes = minBytes;
        _maxBytes = maxBytes;
        _writers = [.. Enumerable.Range(0, streams).Select(s => Task.Run(() => WriteAsync($"{prefix}-s{s}", new Random(seed + s))))];
    }

    /// <summary>Read back after every write (see the class summary).</summary>
    public volatile bool VerifyReads;

    public IReadOnlyCollection<WriteOutcome> Outcomes => _outcomes;

    /// <summary>Reads that returned something else than the newest acknowledged content (or failed).</summary>
    public IReadOnlyCollection<string> ReadProblems => _readProblems;

    public long VerifiedReads => Interlocked.Read(ref _verifiedReads);

    public int AcknowledgedSince(long started) => _outcomes.Count(o => o.Started >= started && o.Acknowledged);

    /// <summary>Bytes of the acknowledged writes that started at or after <paramref name="started"/>.</summary>
    public long AcknowledgedBytesSince(long started) => _outcomes.Where(o => o.Started >= started && o.Acknowledged).Sum(o => (long)o.Length);

    public IReadOnlyList<WriteOutcome> FailedSince(long started) => [.. _outcomes.Where(o => o.Started >= started && !o.Acknowledged)];

    public string Summary() =>
        $"{_outcomes.Count(o => o.Acknowledged)} writes acknowledged, {_outcomes.Count(o => !o.Acknowledged)} failed, {VerifiedReads} reads verified; " +
        $"last failures: {string.Join("; ", _outcomes.Where(o => !o.Acknowledged).TakeLast(3).Select(o => o.Error!.GetType().Name + ": " + o.Error.Message))}";

    private async Task WriteAsync(string prefix, Random rng)
    {
        var own = new List<string>();
        for (long n = 1; !_stop.IsCancellationRequested; n++)
        {
            var name = n % 4 == 0 ? prefix + "-hot" : $"{prefix}-{n}";
            var data = new byte[rng.Next(_minBytes, _maxBytes + 1)];
            rng.NextBytes(data);
            var crc = Crc32C.Compute(data);
            var started = Stopwatch.GetTimestamp();
            Exception? error = null;
            try
            {
                // No cancellation token: a write is never abandoned by the test, only by its deadline.
                await _io.ExecuteAsync(name, [OsdOp.WriteFull(data)], _timeout);
            }
            catch (ClusterClientException e)
            {
                error = e;
            }
            var state = _objects.GetOrAdd(name, _ => new ObjectState());
            lock (state)
            {
                if (error is null)
                {
                    state.Acked = crc;
                    state.Length = data.Length;
                    state.Uncertain.Clear();
                }
                else
                {
                    state.Uncertain.Add(crc);
                }
            }
            _outcomes.Enqueue(new WriteOutcome(started, Stopwatch.GetTimestamp(), name, error, data.Length));
            if (error is null && !name.EndsWith("-hot", StringComparison.Ordinal))
            {
                own.Add(name);
            }
            if (VerifyReads && own.Count > 0)
            {
                await CheckAsync(prefix + "-hot");
                await CheckAsync(own[rng.Next(own.Count)]);
            }
        }
    }

    /// <summary>Reads <paramref name="name"/> (no write of it in flight) and compares it with its newest acknowledged
    /// content, or the content of a write that failed after it; a problem is recorded, not thrown.</summary>
    private async Task CheckAsync(string name)
    {
        if (!_objects.TryGetValue(name, out var state) || state.Length == 0)
        {
            return;
        }
        uint acked;
        List<uint> allowed;
        lock (state)
        {
            acked = state.Acked;
            allowed = [acked, .. state.Uncertain];
        }
        try
        {
            var bytes = await _io.ReadAsync(name, 0, (ulong)Math.Max(32 * 1024, _maxBytes));
            var crc = Crc32C.Compute(bytes.Span);
            if (!allowed.Contains(crc))
            {
                _readProblems.Enqueue($"{name}: read {bytes.Length} bytes with crc32c {crc:x8}; the newest acknowledged write has {acked:x8}" +
                    (allowed.Count > 1 ? $" (or a failed write after it: {string.Join(", ", allowed.Skip(1).Select(c => c.ToString("x8")))})" : ""));
            }
            else
            {
                Interlocked.Increment(ref _verifiedReads);
            }
        }
        catch (ClusterClientException e)
        {
            _readProblems.Enqueue($"{name}: read failed: {e.GetType().Name}: {e.Message}");
        }
    }

    /// <summary>Stops the writers (each finishes the write it is in, within its deadline).</summary>
    public async Task StopAsync()
    {
        await _stop.CancelAsync();
        await Task.WhenAll(_writers);
    }

    /// <summary>The fresh objects (written once, never again) whose write started in [<paramref name="from"/>,
    /// <paramref name="to"/>) and was acknowledged.</summary>
    public IReadOnlyList<string> FreshAcknowledged(long from, long to) =>
        [.. _outcomes.Where(o => o.Acknowledged && o.Started >= from && o.Started < to && !o.Name.EndsWith("-hot", StringComparison.Ordinal)).Select(o => o.Name)];

    /// <summary>Reads <paramref name="names"/> (objects with no write in flight) and returns what did not read back
    /// as acknowledged.</summary>
    public async Task<IReadOnlyList<string>> CheckAsync(IReadOnlyList<string> names)
    {
        var before = _readProblems.Count;
        foreach (var name in names)
        {
            await CheckAsync(name);
        }
        return [.. _readProblems.Skip(before)];
    }

    /// <summary>After <see cref="StopAsync"/>: reads every object that had an acknowledged write and returns what
    /// did not come back with the newest acknowledged content's checksum (a failed write after it is allowed).</summary>
    public async Task<(int Checked, IReadOnlyList<string> Problems)> CheckEverythingAsync()
    {
        var names = _objects.Where(kv => kv.Value.Length > 0).Select(kv => kv.Key).ToList();
        return (names.Count, await CheckAsync(names));
    }

    public async ValueTask DisposeAsync()
    {
        if (!_stop.IsCancellationRequested)
        {
            await StopAsync();
        }
        _stop.Dispose();
    }
}
