using System.Numerics;

namespace Appliance.Store.Alloc;

/// <summary>
/// The free space of the data area: one bit per 4 KiB block (set = in use). It is not persisted: mount rebuilds it
/// from the data bitmap the index holds (itself changed only as redo entries apply) and the index's own pages, so it
/// can never disagree with them across a crash. Memory: one bit per 4 KiB of data area
/// (32 MiB per TiB). Thread-safe.
///
/// Placement keeps large objects contiguous under copy-on-write churn: every 4 KiB overwrite frees one block
/// somewhere, and a next-fit allocator would soon hand those scattered holes to a 4 MiB write (hundreds of device
/// I/Os instead of one). So allocations of a whole word or more (64 blocks, 256 KiB) take entirely free words,
/// next-fit from their own cursor; smaller ones (and the remainder of a large one) fill the holes of partly used
/// words first, looking a bounded distance ahead of their own cursor, and only then break into a free word.
/// </summary>
internal sealed class Allocator
{
    /// <summary>How many words a small allocation looks through for a partly used one before it takes any free
    /// block (bounds its cost on a fresh store, where no word is partly used).</summary>
    private const int HoleSearchWords = 1024;

    private readonly ulong[] _used;
    private readonly long _first;
    private readonly long _count;
    private readonly Lock _lock = new();
    // Word indexes where the next search of each kind starts.
    private int _wholeCursor;
    private int _holeCursor;

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

    /// <summary>Free blocks that <see cref="TryAllocate"/> (object data) leaves alone: the pages the index may need
    /// at its next commit (<see cref="IndexPageAllocator"/> takes them). May exceed <see cref="Free"/>.</summary>
    public long Reserved
    {
        get
        {
            lock (_lock)
            {
                return _reserved;
            }
        }
        set
        {
            lock (_lock)
            {
                _reserved = Math.Max(0, value);
            }
        }
    }

    private long _reserved;

    public long Total => _count;

    /// <summary>The first block of the data area.</summary>
    public long First => _first;

    /// <summary>Marks a block in use while rebuilding at mount; false if it was already in use (the
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
    /// none at all and false when fewer are free beside the <see cref="Reserved"/> ones (or, with
    /// <paramref name="useReserve"/>, the index's own allocations, fewer are free at all).</summary>
    public bool TryAllocate(int count, List<long> into, bool useReserve = false)
    {
        lock (_lock)
        {
            if (count > Free - (useReserve ? 0 : _reserved))
            {
                return false;
            }
            var need = count;
            if (need >= 64)
            {
                need = TakeWholeWords(need, into);
            }
            while (need > 0)
            {
                need = TakeFromWord(FindWordForSmall(), need, into);
            }
            Free -= count;
            return true;
        }
    }

    /// <summary>Takes runs of entirely free words while at least a word is needed; returns what is still needed.</summary>
    private int TakeWholeWords(int need, List<long> into)
    {
        var words = _used.Length;
        var w = _wholeCursor;
        for (var scanned = 0; scanned < words && need >= 64; scanned++, w = (w + 1) % words)
        {
            if (_used[w] != 0)
            {
                continue;
            }
            // Consecutive free words follow one another here, so a large allocation comes out in long runs.
            _used[w] = ulong.MaxValue;
            var baseBlock = _first + ((long)w << 6);
            for (var b = 0; b < 64; b++)
            {
                into.Add(baseBlock + b);
            }
            need -= 64;
            _wholeCursor = (w + 1) % words;
        }
        return need;
    }

    /// <summary>The word a small allocation takes from: the first partly used word within
    /// <see cref="HoleSearchWords"/> of the cursor, else the first word with any free block (one exists: the caller
    /// checked the free count).</summary>
    private int FindWordForSmall()
    {
        var words = _used.Length;
        var look = Math.Min(words, HoleSearchWords);
        for (var k = 0; k < look; k++)
        {
            var w = (_holeCursor + k) % words;
            var u = _used[w];
            if (u != ulong.MaxValue && u != 0)
            {
                return w;
            }
        }
        for (var k = 0; k < words; k++)
        {
            var w = (_holeCursor + k) % words;
            if (_used[w] != ulong.MaxValue)
            {
                return w;
            }
        }
        throw new InvalidOperationException("allocator has no free block although its count says so");
    }

    /// <summary>Takes free blocks of word <paramref name="w"/>, lowest first, up to <paramref name="need"/>;
    /// returns what is still needed.</summary>
    private int TakeFromWord(int w, int need, List<long> into)
    {
        ref var word = ref _used[w];
        while (need > 0 && word != ulong.MaxValue)
        {
            var bit = BitOperations.TrailingZeroCount(~word);
            word |= 1UL << bit;
            into.Add(_first + ((long)w << 6) + bit);
            need--;
        }
        _holeCursor = word == ulong.MaxValue ? (w + 1) % _used.Length : w;
        return need;
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
}
