namespace Appliance.Store;

/// <summary>
/// A bounded cache of data blocks as read from the device, keyed by device block number, so hot small reads do not
/// go to the disk. Only what a reader has just checked against its crc goes in, and a hit is checked against the
/// reader's crc again before use (the caller does that), so a wrong entry costs a device read, never wrong data.
/// </summary>
/// <remarks>
/// Staleness: every device write of a block drops it before the write starts and again after it completes
/// (<see cref="Invalidate"/>), and an insert carries the block's stamp taken before its device read: a write that
/// began or ended since then bumped the stamp and the insert is dropped. So an entry never outlives a write of its
/// block. Memory: frames of 4 KiB in slabs of up to 1 MiB allocated on first use, the budget rounded up to a slab; CLOCK
/// eviction. One lock; every call is short.
/// </remarks>
internal sealed class DataCache
{
    private const int B = 4096;
    private const int MaxFramesPerSlab = 256;
    private const int StampMask = (1 << 14) - 1;

    private readonly Lock _lock = new();
    private readonly int _capacity;
    private readonly int _framesPerSlab;
    private readonly List<byte[]> _slabs = [];
    private readonly Dictionary<long, int> _frameOf = [];
    private long[] _blockOf = [];
    private bool[] _referenced = [];
    private readonly long[] _stamps = new long[StampMask + 1];
    private int _used;
    private int _hand;
    private long _hits;
    private long _misses;
    private long _stale;

    public DataCache(long bytes)
    {
        _capacity = (int)Math.Clamp(bytes / B, 0, int.MaxValue / 2);
        _framesPerSlab = Math.Max(1, Math.Min(MaxFramesPerSlab, _capacity));
    }

    public bool Enabled => _capacity > 0;

    public long Hits => Interlocked.Read(ref _hits);

    public long Misses => Interlocked.Read(ref _misses);

    /// <summary>Hits the caller found not to match the crc it expected: a reader whose block map is older than the
    /// entry (a write of the block raced the read; the reader retries), or a missed invalidation (a bug). With no
    /// write in flight it stays 0.</summary>
    public long StaleHits => Interlocked.Read(ref _stale);

    /// <summary>The caller found the cached block wrong: counted, and dropped.</summary>
    public void Reject(long block)
    {
        Interlocked.Increment(ref _stale);
        Invalidate(block, 1);
    }

    /// <summary>Bytes of frames allocated (never above the budget).</summary>
    public long AllocatedBytes
    {
        get
        {
            lock (_lock)
            {
                return (long)_slabs.Count * _framesPerSlab * B;
            }
        }
    }

    /// <summary>The block's stamp: take it before reading the block from the device and give it to <see cref="Insert"/>.</summary>
    public long Stamp(long block) => Volatile.Read(ref _stamps[block & StampMask]);

    /// <summary>Copies the cached block into <paramref name="destination"/> (4 KiB); false when it is not cached.</summary>
    public bool TryRead(long block, Span<byte> destination)
    {
        if (_capacity == 0)
        {
            return false;
        }
        lock (_lock)
        {
            if (!_frameOf.TryGetValue(block, out var frame))
            {
                _misses++;
                return false;
            }
            _referenced[frame] = true;
            Frame(frame).CopyTo(destination);
            _hits++;
            return true;
        }
    }

    /// <summary>Caches a block read from the device (checked by the caller), unless a write of it began or ended
    /// since <paramref name="stamp"/> was taken.</summary>
    public void Insert(long block, ReadOnlySpan<byte> data, long stamp)
    {
        if (_capacity == 0)
        {
            return;
        }
        lock (_lock)
        {
            if (_stamps[block & StampMask] != stamp)
            {
                return;
            }
            if (!_frameOf.TryGetValue(block, out var frame))
            {
                // New blocks start unreferenced: one read does not make a block hot (a scan does not flush the
                // blocks that are read again and again).
                frame = TakeFrame();
                _frameOf[block] = frame;
                _blockOf[frame] = block;
                _referenced[frame] = false;
            }
            data[..B].CopyTo(Frame(frame));
        }
    }

    /// <summary>Drops the blocks of a device range about to be written, or just written.</summary>
    public void Invalidate(long firstBlock, long count)
    {
        if (_capacity == 0)
        {
            return;
        }
        lock (_lock)
        {
            for (var b = firstBlock; b < firstBlock + count; b++)
            {
                _stamps[b & StampMask]++;
                if (_used > 0 && _frameOf.Remove(b, out var frame))
                {
                    _blockOf[frame] = -1;
                    _referenced[frame] = false;
                }
            }
        }
    }

    /// <summary>Drops everything (the device may have changed under the store).</summary>
    public void Clear()
    {
        lock (_lock)
        {
            for (var i = 0; i < _stamps.Length; i++)
            {
                _stamps[i]++;
            }
            _frameOf.Clear();
            Array.Fill(_blockOf, -1);
            Array.Clear(_referenced);
        }
    }

    private Span<byte> Frame(int frame) => _slabs[frame / _framesPerSlab].AsSpan(frame % _framesPerSlab * B, B);

    /// <summary>A free frame: a new one while under the budget, else the CLOCK hand's next victim (caller holds the lock).</summary>
    private int TakeFrame()
    {
        if (_used < _capacity)
        {
            if (_used == _slabs.Count * _framesPerSlab)
            {
                _slabs.Add(new byte[_framesPerSlab * B]);
                var frames = _slabs.Count * _framesPerSlab;
                Array.Resize(ref _blockOf, frames);
                Array.Resize(ref _referenced, frames);
                Array.Fill(_blockOf, -1, frames - _framesPerSlab, _framesPerSlab);
            }
            return _used++;
        }
        while (true)
        {
            var f = _hand;
            _hand = (_hand + 1) % _used;
            if (_blockOf[f] < 0)
            {
                return f;
            }
            if (_referenced[f])
            {
                _referenced[f] = false;
                continue;
            }
            _frameOf.Remove(_blockOf[f]);
            _blockOf[f] = -1;
            return f;
        }
    }
}
