using System.Numerics;
using Appliance.Store.Index;

namespace Appliance.Store.Alloc;

/// <summary>
/// The index's pages come from the store's allocator: a page number is a device block of the data area (page n at
/// device offset n × 4096), so index pages and object data share the device and one bitmap. The index may take the
/// blocks the allocator keeps in reserve for it (<see cref="Allocator.Reserved"/>); object data may not. The tree
/// frees pages only once no durable root, fallback root or snapshot reaches them (the store calls
/// <see cref="BPlusTree.ReleaseFreedPages"/> with the generation of its older checkpoint slot).
///
/// It also knows which blocks the index owns (its tree's pages and those waiting for release: one bit per block of
/// the data area, like the allocator), so a checkpoint can list them and mount need not read the tree to rebuild
/// the allocator.
/// </summary>
internal sealed class IndexPageAllocator(Allocator allocator) : IPageAllocator
{
    private readonly List<long> _scratch = [];
    private readonly ulong[] _owned = new ulong[(allocator.Total + 63) / 64];
    private readonly Lock _lock = new();

    /// <summary>Blocks the index owns now.</summary>
    public long Owned { get; private set; }

    public void Allocate(Span<long> pages)
    {
        lock (_lock)
        {
            _scratch.Clear();
            if (!allocator.TryAllocate(pages.Length, _scratch, useReserve: true))
            {
                throw new NoSpaceException($"out of space for index pages: {pages.Length} needed, {allocator.Free} blocks free");
            }
            for (var i = 0; i < pages.Length; i++)
            {
                pages[i] = _scratch[i];
                Set(pages[i], true);
            }
        }
    }

    public void Free(ReadOnlySpan<long> pages)
    {
        if (pages.Length == 0)
        {
            return;
        }
        lock (_lock)
        {
            foreach (var p in pages)
            {
                Set(p, false);
            }
        }
        allocator.Release(pages.ToArray());
    }

    public bool IsAllocated(long page) => page >= allocator.First && page < allocator.First + allocator.Total && allocator.IsUsed(page);

    /// <summary>At mount: the block belongs to the index (marked in use in the allocator too); false if it was in
    /// use already.</summary>
    public bool MarkOwned(long page)
    {
        lock (_lock)
        {
            if (!allocator.MarkUsed(page))
            {
                return false;
            }
            Set(page, true);
            return true;
        }
    }

    /// <summary>The owned blocks, except <paramref name="except"/>, as ascending runs (first block, length).</summary>
    public List<(long First, int Length)> OwnedRuns(IReadOnlySet<long> except)
    {
        var runs = new List<(long First, int Length)>();
        lock (_lock)
        {
            for (var w = 0; w < _owned.Length; w++)
            {
                var word = _owned[w];
                while (word != 0)
                {
                    var bit = BitOperations.TrailingZeroCount(word);
                    var page = allocator.First + ((long)w << 6) + bit;
                    word &= word - 1;
                    if (except.Contains(page))
                    {
                        continue;
                    }
                    if (runs.Count > 0 && runs[^1].First + runs[^1].Length == page)
                    {
                        runs[^1] = (runs[^1].First, runs[^1].Length + 1);
                    }
                    else
                    {
                        runs.Add((page, 1));
                    }
                }
            }
        }
        return runs;
    }

    private void Set(long page, bool owned)
    {
        var i = page - allocator.First;
        ref var word = ref _owned[i >> 6];
        var bit = 1UL << (int)(i & 63);
        if (((word & bit) != 0) == owned)
        {
            throw new InvalidOperationException($"index page {page} {(owned ? "allocated" : "freed")} twice");
        }
        word ^= bit;
        Owned += owned ? 1 : -1;
    }
}
