using System.Numerics;

namespace Appliance.Store.Alloc;

/// <summary>
/// The free space of the data area: one bit per 4 KiB block (set = in use), next-fit allocation that prefers
/// contiguous runs. It is not persisted: mount rebuilds it from the block maps, so it can never disagree with them
/// across a crash. Memory: one bit per 4 KiB of data area (32 MiB per TiB). Thread-safe.
/// </summary>
internal sealed class Allocator
{
    private readonly ulong[] _used;
    private readonly long _first;
    private readonly long _count;
    private readonly Lock _lock = new();
    private long _cursor;

    public Allocator(long firstBlock, long blockCount)
    {
        _first = firstBlock;
        _count = blockCount;
        _used = new ulong[(blockCount + 63) / 64];
        // Bits past the end are permanently "in use" so the scan never returns them.
        for (var i = blockCount; i < _used.Length * 64L; i++)
        {
            _used[i >> 6] |= 1UL << (int)(i & 63);
        }
        Free = blockCount;
    }

    /// <summary>Free blocks.</summary>
    public long Free { get; private set; }

    public long Total => _count;

    /// <summary>Marks a block in use while rebuilding from the block maps; false if it was already in use (the
    /// block is owned twice).</summary>
    public bool MarkUsed(long phys)
    {
        lock (_lock)
        {
            var i = phys - _first;
            ref var word = ref _used[i >> 6];
            var bit = 1UL << (int)(i & 63);
            if ((word & bit) != 0)
            {
                return false;
            }
            word |= bit;
            Free--;
            return true;
        }
    }

    public bool IsUsed(long phys)
    {
        lock (_lock)
        {
            var i = phys - _first;
            return (_used[i >> 6] & (1UL << (int)(i & 63))) != 0;
        }
    }

    /// <summary>Allocates <paramref name="count"/> blocks (appended to <paramref name="into"/> in ascending runs), or
    /// none at all and false when fewer are free.</summary>
    public bool TryAllocate(int count, List<long> into)
    {
        lock (_lock)
        {
            if (count > Free)
            {
                return false;
            }
            var need = count;
            while (need > 0)
            {
                var start = NextFree(_cursor);
                var i = start;
                while (need > 0 && i < _count && (_used[i >> 6] & (1UL << (int)(i & 63))) == 0)
                {
                    _used[i >> 6] |= 1UL << (int)(i & 63);
                    into.Add(_first + i);
                    i++;
                    need--;
                }
                _cursor = i >= _count ? 0 : i;
            }
            Free -= count;
            return true;
        }
    }

    /// <summary>Returns blocks to the free pool.</summary>
    public void Release(IEnumerable<long> blocks)
    {
        lock (_lock)
        {
            foreach (var phys in blocks)
            {
                var i = phys - _first;
                ref var word = ref _used[i >> 6];
                var bit = 1UL << (int)(i & 63);
                if ((word & bit) == 0)
                {
                    throw new InvalidOperationException($"block {phys} freed twice");
                }
                word &= ~bit;
                Free++;
            }
        }
    }

    /// <summary>The first free block at or after <paramref name="from"/>, wrapping; the caller knows one exists.</summary>
    private long NextFree(long from)
    {
        var words = _used.Length;
        var w = (int)(from >> 6);
        var first = ~_used[w] & (ulong.MaxValue << (int)(from & 63));
        if (first != 0)
        {
            return ((long)w << 6) + BitOperations.TrailingZeroCount(first);
        }
        for (var k = 1; k <= words; k++)
        {
            var idx = (w + k) % words;
            var free = ~_used[idx];
            if (free != 0)
            {
                return ((long)idx << 6) + BitOperations.TrailingZeroCount(free);
            }
        }
        throw new InvalidOperationException("allocator has no free block although its count says so");
    }
}
