using Appliance.Platform.Native;

namespace Appliance.Platform.Devices;

/// <summary>An operation kind, for choosing where a fault fires.</summary>
public enum FaultOp
{
    Read,
    Write,
    Flush,
    Discard,
}

/// <summary>What a simulated power cut does to the writes that were not yet made durable by a flush.</summary>
public enum PowerCutMode
{
    /// <summary>Every unflushed write is lost.</summary>
    DropUnflushed,
    /// <summary>Each unflushed write independently landed or not (the device reorders freely before a flush).</summary>
    KeepRandomSubset,
    /// <summary>The unflushed writes landed in order up to one, which is torn: only its first sectors (a whole
    /// number of 512-byte units, or of the inner device's block size if larger) reached the medium; the writes
    /// after it are lost.</summary>
    TearOne,
}

/// <summary>The device lost power (see <see cref="FaultInjectingDevice.PowerCutAsync"/>): nothing more reaches it.</summary>
public sealed class DevicePoweredOffException(string name) : IOException($"{name} has lost power (simulated power cut)");

/// <summary>What a power cut did, for tests to assert against.</summary>
/// <param name="Kept">Unflushed writes that landed whole, as (offset, length).</param>
/// <param name="Dropped">Unflushed writes that were lost.</param>
/// <param name="Torn">The torn write, if any, and how many of its bytes landed.</param>
public sealed record PowerCutReport(
    IReadOnlyList<(long Offset, int Length)> Kept,
    IReadOnlyList<(long Offset, int Length)> Dropped,
    (long Offset, int Length, int LandedBytes)? Torn);

/// <summary>Counts of faults that fired.</summary>
public sealed class FaultCounters
{
    public int InjectedErrors;
    public int BitsFlippedOnRead;
    public int BitsCorruptedOnMedium;
    public int DelayedOperations;
    public int PowerCuts;
}

/// <summary>
/// Wraps a device and injects the failures real disks have: a power cut that loses or tears the writes not yet
/// flushed, bit flips (on the medium, or in data being read), EIO on chosen operations and ranges, and latency.
/// Randomness comes from a seed, so a failing test replays exactly.
///
/// How the power cut is exact: every write records the bytes it replaced and the bytes it wrote, until a flush
/// that started after it completes. At the cut, all unflushed writes are undone newest-first (restoring the state of
/// the last flush) and the chosen ones are re-applied oldest-first, whole or torn. After a cut the wrapper refuses
/// all I/O; wrap the inner device again to "reboot". Writes are serialised inside the wrapper (the undo record must
/// match what was overwritten), so it is a test device, not a fast one.
/// </summary>
public sealed class FaultInjectingDevice : IBlockDevice
{
    private readonly IBlockDevice _inner;
    private readonly Random _random;
    private readonly TimeProvider _time;
    private readonly SemaphoreSlim _writeLock = new(1, 1);
    private readonly Lock _lock = new();
    private readonly List<WriteRecord> _unflushed = [];
    private readonly List<ErrorRule> _rules = [];
    private long _nextSeq;
    private int _inflight;
    private volatile bool _poweredOff;

    public FaultInjectingDevice(IBlockDevice inner, int seed = 0, TimeProvider? time = null)
    {
        _inner = inner;
        _random = new Random(seed);
        _time = time ?? TimeProvider.System;
    }

    public string Name => _inner.Name;
    public long Size => _inner.Size;
    public int BlockSize => _inner.BlockSize;
    public int MemoryAlignment => _inner.MemoryAlignment;
    public bool IsReadOnly => _inner.IsReadOnly;
    public bool IsPoweredOff => _poweredOff;
    public FaultCounters Counters { get; } = new();

    public TimeSpan ReadLatency { get; set; }
    public TimeSpan WriteLatency { get; set; }
    public TimeSpan FlushLatency { get; set; }

    /// <summary>Probability that a read returns its data with one bit flipped (the medium stays intact).</summary>
    public double ReadBitFlipProbability { get; set; }

    /// <summary>How many completed writes are not yet covered by a flush.</summary>
    public int UnflushedWrites
    {
        get
        {
            lock (_lock)
            {
                return _unflushed.Count;
            }
        }
    }

    /// <summary>Makes the next <paramref name="times"/> operations of kind <paramref name="op"/> that touch the
    /// range fail with <paramref name="errno"/> (EIO by default) without reaching the medium.</summary>
    public void FailWith(FaultOp op, int times = int.MaxValue, long offset = 0, long length = long.MaxValue, int errno = Errno.EIO)
    {
        lock (_lock)
        {
            _rules.Add(new ErrorRule(op, offset, length, errno) { Remaining = times });
        }
    }

    public void ClearFaults()
    {
        lock (_lock)
        {
            _rules.Clear();
        }
        ReadBitFlipProbability = 0;
        ReadLatency = WriteLatency = FlushLatency = TimeSpan.Zero;
    }

    /// <summary>Flips bit <paramref name="bit"/> (0-7) of the byte at <paramref name="offset"/> on the medium:
    /// silent corruption that every later read sees. Corrupt flushed data; an unflushed write over the byte may be
    /// undone by a later power cut.</summary>
    public async ValueTask CorruptAsync(long offset, int bit)
    {
        ObjectDisposedException.ThrowIf(_poweredOff, this);
        var block = offset - offset % _inner.BlockSize;
        using var buffer = new AlignedBuffer(_inner.BlockSize, _inner.MemoryAlignment);
        await _writeLock.WaitAsync();
        try
        {
            await _inner.ReadAsync(block, buffer.Memory);
            buffer.GetSpan()[(int)(offset - block)] ^= (byte)(1 << (bit & 7));
            await _inner.WriteAsync(block, buffer.Memory);
            await _inner.FlushAsync();
        }
        finally
        {
            _writeLock.Release();
        }
        Interlocked.Increment(ref Counters.BitsCorruptedOnMedium);
    }

    public async ValueTask ReadAsync(long offset, Memory<byte> destination, CancellationToken ct = default)
    {
        Enter();
        try
        {
            await DelayAsync(ReadLatency, ct);
            CheckRule(FaultOp.Read, offset, destination.Length, "pread");
            await _inner.ReadAsync(offset, destination, ct);
            ExitCheck();
            if (ReadBitFlipProbability > 0 && destination.Length > 0)
            {
                int? bit = null;
                lock (_lock)
                {
                    if (_random.NextDouble() < ReadBitFlipProbability)
                    {
                        bit = _random.Next(destination.Length * 8);
                    }
                }
                if (bit is { } b)
                {
                    destination.Span[b >> 3] ^= (byte)(1 << (b & 7));
                    Interlocked.Increment(ref Counters.BitsFlippedOnRead);
                }
            }
        }
        finally
        {
            Interlocked.Decrement(ref _inflight);
        }
    }

    public async ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> source, CancellationToken ct = default)
    {
        Enter();
        try
        {
            await DelayAsync(WriteLatency, ct);
            CheckRule(FaultOp.Write, offset, source.Length, "pwrite");
            DeviceChecks.Io(this, offset, source.Length, source, write: true);
            await _writeLock.WaitAsync(ct);
            try
            {
                var old = new byte[source.Length];
                using (var buffer = new AlignedBuffer(source.Length, _inner.MemoryAlignment))
                {
                    await _inner.ReadAsync(offset, buffer.Memory, CancellationToken.None);
                    buffer.GetSpan().CopyTo(old);
                }
                // From here on the write must be recorded even if the power is cut meanwhile: it reached the medium.
                await _inner.WriteAsync(offset, source, CancellationToken.None);
                lock (_lock)
                {
                    _unflushed.Add(new WriteRecord(_nextSeq++, offset, old, source.ToArray()));
                }
            }
            finally
            {
                _writeLock.Release();
            }
            ExitCheck();
        }
        finally
        {
            Interlocked.Decrement(ref _inflight);
        }
    }

    public async ValueTask FlushAsync(CancellationToken ct = default)
    {
        Enter();
        try
        {
            await DelayAsync(FlushLatency, ct);
            CheckRule(FaultOp.Flush, 0, 0, "fdatasync");
            long upTo;
            lock (_lock)
            {
                upTo = _nextSeq;
            }
            await _inner.FlushAsync(ct);
            lock (_lock)
            {
                // Only writes that completed before the flush started are durable now; later ones stay at risk.
                _unflushed.RemoveAll(r => r.Seq < upTo);
            }
            ExitCheck();
        }
        finally
        {
            Interlocked.Decrement(ref _inflight);
        }
    }

    public async ValueTask DiscardAsync(long offset, long length, CancellationToken ct = default)
    {
        Enter();
        try
        {
            CheckRule(FaultOp.Discard, offset, length, "discard");
            // A discard changes content like a write does; record it so a power cut can undo it.
            DeviceChecks.Range(this, offset, length);
            await _writeLock.WaitAsync(ct);
            try
            {
                var old = new byte[length];
                using (var buffer = new AlignedBuffer((int)length, _inner.MemoryAlignment))
                {
                    await _inner.ReadAsync(offset, buffer.Memory, CancellationToken.None);
                    buffer.GetSpan().CopyTo(old);
                    await _inner.DiscardAsync(offset, length, CancellationToken.None);
                    await _inner.ReadAsync(offset, buffer.Memory, CancellationToken.None);
                    lock (_lock)
                    {
                        _unflushed.Add(new WriteRecord(_nextSeq++, offset, old, buffer.GetSpan().ToArray()));
                    }
                }
            }
            finally
            {
                _writeLock.Release();
            }
            ExitCheck();
        }
        finally
        {
            Interlocked.Decrement(ref _inflight);
        }
    }

    /// <summary>
    /// Cuts the power: waits for operations already at the medium to finish (their callers get
    /// <see cref="DevicePoweredOffException"/>), then leaves the inner device as a real disk could be after the
    /// cut, according to <paramref name="mode"/>, and flushes it. The wrapper refuses all I/O afterwards.
    /// </summary>
    public async Task<PowerCutReport> PowerCutAsync(PowerCutMode mode)
    {
        if (_poweredOff)
        {
            throw new InvalidOperationException($"{Name} is already powered off");
        }
        _poweredOff = true;
        Interlocked.Increment(ref Counters.PowerCuts);
        while (Volatile.Read(ref _inflight) > 0)
        {
            await Task.Delay(1);
        }

        List<WriteRecord> records;
        lock (_lock)
        {
            records = [.. _unflushed.OrderBy(r => r.Seq)];
            _unflushed.Clear();
        }

        var tearUnit = Math.Max(512, _inner.BlockSize);
        var landed = new int[records.Count];
        var tornIndex = -1;
        switch (mode)
        {
            case PowerCutMode.DropUnflushed:
                break;
            case PowerCutMode.KeepRandomSubset:
                for (var i = 0; i < records.Count; i++)
                {
                    landed[i] = _random.Next(2) == 1 ? records[i].New.Length : 0;
                }
                break;
            case PowerCutMode.TearOne:
                if (records.Count > 0)
                {
                    // Prefer a write that spans several units: a single unit is atomic and cannot tear.
                    var multi = Enumerable.Range(0, records.Count).Where(i => records[i].New.Length > tearUnit).ToList();
                    var t = multi.Count > 0 ? multi[_random.Next(multi.Count)] : _random.Next(records.Count);
                    for (var i = 0; i < t; i++)
                    {
                        landed[i] = records[i].New.Length;
                    }
                    var units = records[t].New.Length / tearUnit;
                    landed[t] = units > 1 ? _random.Next(1, units) * tearUnit : 0;
                    tornIndex = t;
                }
                break;
            default:
                throw new ArgumentOutOfRangeException(nameof(mode));
        }

        // Back to the state of the last flush: undo newest first, so overlapping writes restore correctly.
        for (var i = records.Count - 1; i >= 0; i--)
        {
            await WriteInnerAsync(records[i].Offset, records[i].Old);
        }
        // Then replay, oldest first, what landed.
        var kept = new List<(long, int)>();
        var dropped = new List<(long, int)>();
        (long, int, int)? torn = null;
        for (var i = 0; i < records.Count; i++)
        {
            var r = records[i];
            if (landed[i] > 0)
            {
                await WriteInnerAsync(r.Offset, r.New.AsMemory(0, landed[i]));
            }
            if (i == tornIndex && landed[i] > 0)
            {
                torn = (r.Offset, r.New.Length, landed[i]);
            }
            else if (landed[i] == r.New.Length)
            {
                kept.Add((r.Offset, r.New.Length));
            }
            else
            {
                dropped.Add((r.Offset, r.New.Length));
            }
        }
        await _inner.FlushAsync();
        return new PowerCutReport(kept, dropped, torn);
    }

    private async Task WriteInnerAsync(long offset, ReadOnlyMemory<byte> data)
    {
        using var buffer = new AlignedBuffer(data.Length, _inner.MemoryAlignment);
        data.Span.CopyTo(buffer.GetSpan());
        await _inner.WriteAsync(offset, buffer.Memory);
    }

    private void Enter()
    {
        Interlocked.Increment(ref _inflight);
        if (_poweredOff)
        {
            Interlocked.Decrement(ref _inflight);
            throw new DevicePoweredOffException(Name);
        }
    }

    /// <summary>An operation that finished after the cut began did reach the medium, but its caller is gone.</summary>
    private void ExitCheck()
    {
        if (_poweredOff)
        {
            throw new DevicePoweredOffException(Name);
        }
    }

    private async ValueTask DelayAsync(TimeSpan latency, CancellationToken ct)
    {
        if (latency > TimeSpan.Zero)
        {
            Interlocked.Increment(ref Counters.DelayedOperations);
            await Task.Delay(latency, _time, ct);
        }
    }

    private void CheckRule(FaultOp op, long offset, long length, string call)
    {
        lock (_lock)
        {
            foreach (var rule in _rules)
            {
                if (rule.Op == op && rule.Remaining > 0 && rule.Overlaps(offset, length))
                {
                    rule.Remaining--;
                    Interlocked.Increment(ref Counters.InjectedErrors);
                    throw Throw.For($"{call} (injected)", rule.Errno, Name);
                }
            }
        }
    }

    /// <summary>Releases the wrapper only: the inner device belongs to the caller, who may wrap it again.</summary>
    public ValueTask DisposeAsync()
    {
        _writeLock.Dispose();
        return ValueTask.CompletedTask;
    }

    private sealed record WriteRecord(long Seq, long Offset, byte[] Old, byte[] New);

    private sealed record ErrorRule(FaultOp Op, long Offset, long Length, int Errno)
    {
        public int Remaining { get; set; }

        public bool Overlaps(long offset, long length) =>
            Op == FaultOp.Flush || (offset < Offset + Math.Min(Length, long.MaxValue - Offset) && Offset < offset + Math.Max(length, 1));
    }
}
