using Appliance.Platform.Devices;

namespace Appliance.Store.Index;

/// <summary>Counters of the index's page cache and I/O (monotonic, except the resident counts).</summary>
public sealed class IndexStats
{
    internal long HitsValue, MissesValue, EvictionsValue, SpillsValue, BytesReadValue, BytesWrittenValue, PeakResidentValue, ResidentValue;

    /// <summary>Page lookups served from memory.</summary>
    public long Hits => Volatile.Read(ref HitsValue);
    /// <summary>Page lookups that read the device.</summary>
    public long Misses => Volatile.Read(ref MissesValue);
    /// <summary>Pages dropped from memory to make room.</summary>
    public long Evictions => Volatile.Read(ref EvictionsValue);
    /// <summary>Dirty pages written before their commit to make room (see README: spilling).</summary>
    public long Spills => Volatile.Read(ref SpillsValue);
    /// <summary>Bytes read from the device (cache misses, <see cref="BPlusTree.CheckAsync"/>, page listing).</summary>
    public long BytesRead => Volatile.Read(ref BytesReadValue);
    /// <summary>Bytes of pages written to the device (commits and spills).</summary>
    public long BytesWritten => Volatile.Read(ref BytesWrittenValue);
    /// <summary>Page buffers held now.</summary>
    public long ResidentBytes => Volatile.Read(ref ResidentValue) * Page.Size;
    /// <summary>The most page buffers ever held at once.</summary>
    public long PeakResidentBytes => Volatile.Read(ref PeakResidentValue) * Page.Size;
    /// <summary>The budget: page buffers never exceed it.</summary>
    public long CapacityBytes { get; internal set; }
}

/// <summary>A page buffer of the cache. Pinned while an operation uses its bytes.</summary>
internal sealed class Frame(AlignedBuffer buffer)
{
    public readonly AlignedBuffer Buffer = buffer;
    public long PageNo = -1;
    public int Pins;
    public bool Dirty;
    public bool Referenced;

    public Span<byte> Span => Buffer.GetSpan();
}

/// <summary>
/// A fixed number of 4 KiB page buffers (allocated on first use, never more than the budget), looked up by page
/// number, evicted by CLOCK (a page used since the hand last passed gets a second chance). Dirty pages are those
/// the open transaction wrote; evicting one writes it first ("spill") — safe under copy-on-write because a dirty
/// page always sits at a freshly allocated page number that no committed root refers to. Every page read from the
/// device is validated before anyone sees it. Not thread-safe: the tree calls it under its gate.
/// </summary>
internal sealed class PageCache : IDisposable
{
    private readonly IBlockDevice _device;
    private readonly uint _seed;
    private readonly int _capacity;
    private readonly IndexStats _stats;
    private readonly Dictionary<long, Frame> _map = [];
    private readonly List<Frame> _frames = [];
    private readonly Stack<Frame> _free = new();
    private int _hand;

    public PageCache(IBlockDevice device, long capacityBytes, uint seed, IndexStats stats)
    {
        _device = device;
        _seed = seed;
        _capacity = (int)Math.Min(int.MaxValue, capacityBytes / Page.Size);
        if (_capacity < BPlusTree.MinCachePages)
        {
            throw new ArgumentOutOfRangeException(nameof(capacityBytes), $"a page cache needs at least {BPlusTree.MinCachePages} pages ({BPlusTree.MinCachePages * Page.Size} bytes)");
        }
        _stats = stats;
        stats.CapacityBytes = (long)_capacity * Page.Size;
    }

    /// <summary>The page, pinned, read and validated on a miss. The caller checks its place in the tree.</summary>
    public async ValueTask<Frame> GetAsync(long page, long maxGeneration)
    {
        if (_map.TryGetValue(page, out var f))
        {
            _stats.HitsValue++;
            f.Referenced = true;
            f.Pins++;
            return f;
        }
        if (page < 0 || (page + 1) * Page.Size > _device.Size)
        {
            throw new PageCorruptionException(page, $"page number is outside the device ({_device.Size / Page.Size} pages)");
        }
        _stats.MissesValue++;
        f = await TakeFrameAsync();
        try
        {
            await _device.ReadAsync(page * Page.Size, f.Buffer.Memory);
        }
        catch
        {
            _free.Push(f);
            throw;
        }
        _stats.BytesReadValue += Page.Size;
        if (Page.Validate(f.Span, page, _seed, maxGeneration) is { } error)
        {
            _free.Push(f);
            throw new PageCorruptionException(page, error);
        }
        f.PageNo = page;
        f.Pins = 1;
        f.Dirty = false;
        f.Referenced = true;
        _map[page] = f;
        return f;
    }

    /// <summary>A frame for a freshly allocated page (pinned, dirty, content cleared). A stale frame of the same
    /// number (a page freed and now reused) is taken over.</summary>
    public async ValueTask<Frame> CreateAsync(long page)
    {
        if (!_map.TryGetValue(page, out var f))
        {
            f = await TakeFrameAsync();
            f.PageNo = page;
            _map[page] = f;
        }
        else if (f.Pins > 0)
        {
            throw new InvalidOperationException($"page {page} was allocated while still in use");
        }
        f.Span.Clear();
        f.Pins = 1;
        f.Dirty = true;
        f.Referenced = true;
        return f;
    }

    public static void Unpin(Frame f) => f.Pins--;

    /// <summary>Forgets a page (freed): its bytes, dirty or not, are never written. <paramref name="force"/>: also
    /// if pinned (a rollback after an operation failed part-way).</summary>
    public void Drop(long page, bool force)
    {
        if (_map.Remove(page, out var f))
        {
            if (f.Pins > 0 && !force)
            {
                throw new InvalidOperationException($"page {page} dropped while in use");
            }
            f.Pins = 0;
            f.PageNo = -1;
            f.Dirty = false;
            _free.Push(f);
        }
    }

    /// <summary>Unpins every frame: after an operation failed part-way (under the gate nothing else is running).</summary>
    public void ResetPins()
    {
        foreach (var f in _frames)
        {
            f.Pins = 0;
        }
    }

    /// <summary>The frame of a page if it is cached and dirty (written by the open transaction), else null.</summary>
    public Frame? DirtyFrame(long page) => _map.TryGetValue(page, out var f) && f.Dirty ? f : null;

    /// <summary>Reads a page past the cache into <paramref name="buffer"/> and validates it (for fsck).</summary>
    public async ValueTask<string?> ReadUncachedAsync(long page, AlignedBuffer buffer, long maxGeneration)
    {
        if (page < 0 || (page + 1) * Page.Size > _device.Size)
        {
            return $"page number is outside the device ({_device.Size / Page.Size} pages)";
        }
        await _device.ReadAsync(page * Page.Size, buffer.Memory[..Page.Size]);
        _stats.BytesReadValue += Page.Size;
        return Page.Validate(buffer.GetSpan(), page, _seed, maxGeneration);
    }

    /// <summary>Seals and writes every dirty page (one batch); they are clean afterwards. Returns how many.</summary>
    public async ValueTask<int> WriteDirtyAsync()
    {
        var writes = new List<(long, ReadOnlyMemory<byte>)>();
        var frames = new List<Frame>();
        foreach (var f in _frames)
        {
            if (f.Dirty && f.PageNo >= 0)
            {
                Page.Seal(f.Span, _seed);
                writes.Add((f.PageNo * Page.Size, f.Buffer.Memory));
                frames.Add(f);
            }
        }
        if (writes.Count > 0)
        {
            await _device.WriteManyAsync(writes);
            _stats.BytesWrittenValue += (long)writes.Count * Page.Size;
        }
        foreach (var f in frames)
        {
            f.Dirty = false;
        }
        return writes.Count;
    }

    /// <summary>A free frame: a new buffer while under budget, else a CLOCK victim (spilled first if dirty).</summary>
    private async ValueTask<Frame> TakeFrameAsync()
    {
        if (_free.TryPop(out var free))
        {
            return free;
        }
        if (_frames.Count < _capacity)
        {
            var f = new Frame(new AlignedBuffer(Page.Size, Page.Size));
            _frames.Add(f);
            _stats.ResidentValue = _frames.Count;
            _stats.PeakResidentValue = Math.Max(_stats.PeakResidentValue, _frames.Count);
            return f;
        }
        for (var step = 0; step < 2 * _frames.Count + 1; step++)
        {
            var f = _frames[_hand];
            _hand = (_hand + 1) % _frames.Count;
            if (f.Pins > 0)
            {
                continue;
            }
            if (f.Referenced)
            {
                f.Referenced = false;
                continue;
            }
            if (f.Dirty)
            {
                // Spill: the page is a fresh copy no committed root refers to, so writing it early is harmless;
                // the commit's flush makes it durable with the rest.
                Page.Seal(f.Span, _seed);
                f.Pins++;
                try
                {
                    await _device.WriteAsync(f.PageNo * Page.Size, f.Buffer.Memory);
                }
                finally
                {
                    f.Pins--;
                }
                _stats.BytesWrittenValue += Page.Size;
                _stats.SpillsValue++;
                f.Dirty = false;
            }
            _map.Remove(f.PageNo);
            f.PageNo = -1;
            _stats.EvictionsValue++;
            return f;
        }
        throw new InvalidOperationException($"page cache of {_capacity} pages: every page is pinned");
    }

    public void Dispose()
    {
        foreach (var f in _frames)
        {
            f.Buffer.Dispose();
        }
        _frames.Clear();
        _map.Clear();
        _free.Clear();
        _stats.ResidentValue = 0;
    }
}
