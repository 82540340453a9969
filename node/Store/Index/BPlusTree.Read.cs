using System.Buffers;

namespace Appliance.Store.Index;

public sealed partial class BPlusTree
{
    /// <summary>
    /// A page at a known place in the tree, pinned: it must be a leaf at level 0 or a branch at its level, hold at
    /// least one cell, and be no newer than its parent (a parent is rewritten whenever a child is, so a newer child
    /// means a page reused under an old root). Anything else is a <see cref="PageCorruptionException"/>.
    /// </summary>
    internal async ValueTask<Frame> GetNodeAsync(long page, int level, long maxGeneration)
    {
        var f = await _cache.GetAsync(page, _txnGen);
        var p = f.Span;
        var expected = level == 0 ? PageKind.Leaf : PageKind.Branch;
        if (Page.Kind(p) != expected || Page.Level(p) != level || Page.Generation(p) > maxGeneration || Page.Count(p) == 0)
        {
            var found = $"{Page.Kind(p)} at level {Page.Level(p)}, generation {Page.Generation(p)}, {Page.Count(p)} cells";
            PageCache.Unpin(f);
            throw new PageCorruptionException(page, $"expected a non-empty {expected} at level {level} of generation at most {maxGeneration}, found a {found}");
        }
        return f;
    }

    internal async ValueTask<bool> TryGetCoreAsync(View view, ReadOnlyMemory<byte> key, IBufferWriter<byte> value)
    {
        if (view.Root < 0)
        {
            return false;
        }
        var page = view.Root;
        var level = view.Height - 1;
        var maxGen = view.MaxGeneration;
        int overflowLength;
        long overflowFirst;
        while (true)
        {
            var f = await GetNodeAsync(page, level, maxGen);
            try
            {
                var p = f.Span;
                if (level > 0)
                {
                    page = Page.Child(p, Page.ChildIndex(p, key.Span));
                    maxGen = Page.Generation(p);
                    level--;
                    continue;
                }
                var i = Page.Search(p, key.Span, out var found);
                if (!found)
                {
                    return false;
                }
                var v = Page.LeafValue(p, i, out var overflow);
                if (!overflow)
                {
                    value.Write(v);
                    return true;
                }
                (overflowLength, overflowFirst) = Page.OverflowRef(v);
                maxGen = Page.Generation(p);
                break;
            }
            finally
            {
                PageCache.Unpin(f);
            }
        }
        await ReadOverflowAsync(overflowFirst, overflowLength, maxGen, value);
        return true;
    }

    /// <summary>Walks a value's overflow chain: appends its bytes to <paramref name="value"/> and/or its page
    /// numbers to <paramref name="pages"/>. Every page must be an overflow page no newer than its leaf, each full
    /// but the last, the chain exactly as long as the value.</summary>
    internal async ValueTask ReadOverflowAsync(long first, int length, long maxGeneration, IBufferWriter<byte>? value, List<long>? pages = null)
    {
        var page = first;
        var remaining = length;
        while (remaining > 0)
        {
            if (page < 0)
            {
                throw new PageCorruptionException(first, $"overflow chain ends after {length - remaining} of {length} bytes");
            }
            var f = await _cache.GetAsync(page, _txnGen);
            try
            {
                var p = f.Span;
                var want = Math.Min(remaining, Page.OverflowCapacity);
                if (Page.Kind(p) != PageKind.Overflow || Page.Generation(p) > maxGeneration || Page.Used(p) != want)
                {
                    throw new PageCorruptionException(page,
                        $"expected an overflow page of generation at most {maxGeneration} holding {want} bytes (chain from {first}), found a {Page.Kind(p)} of generation {Page.Generation(p)} holding {Page.Used(p)}");
                }
                value?.Write(p.Slice(Page.HeaderSize, want));
                pages?.Add(page);
                remaining -= want;
                page = Page.Next(p);
            }
            finally
            {
                PageCache.Unpin(f);
            }
        }
        if (page != -1)
        {
            throw new PageCorruptionException(first, $"overflow chain goes on to page {page} after the value's {length} bytes");
        }
    }

    /// <summary>
    /// Every page of the writable view (branches, leaves, overflow pages), each visited once, read through the
    /// cache (so validated). Reads the whole tree: for rebuilding an allocator that is not persisted.
    /// </summary>
    public async ValueTask<long> VisitPagesAsync(Action<long> visit, CancellationToken ct = default)
    {
        await EnterAsync(ct);
        try
        {
            ThrowIfUnusable();
            long n = 0;
            var stack = new Stack<(long Page, int Level, long MaxGen)>();
            var chains = new List<(long First, int Length, long Gen)>();
            var overflowPages = new List<long>();
            if (_root >= 0)
            {
                stack.Push((_root, _height - 1, _txnGen));
            }
            while (stack.Count > 0)
            {
                ct.ThrowIfCancellationRequested();
                var (page, level, maxGen) = stack.Pop();
                var f = await GetNodeAsync(page, level, maxGen);
                try
                {
                    var p = f.Span;
                    for (var i = 0; i < Page.Count(p); i++)
                    {
                        if (level > 0)
                        {
                            stack.Push((Page.Child(p, i), level - 1, Page.Generation(p)));
                        }
                        else if (Page.LeafValue(p, i, out var overflow) is var v && overflow)
                        {
                            var (len, first) = Page.OverflowRef(v);
                            chains.Add((first, len, Page.Generation(p)));
                        }
                    }
                }
                finally
                {
                    PageCache.Unpin(f);
                }
                visit(page);
                n++;
                foreach (var (first, len, gen) in chains)
                {
                    await ReadOverflowAsync(first, len, gen, null, overflowPages);
                }
                foreach (var op in overflowPages)
                {
                    visit(op);
                    n++;
                }
                chains.Clear();
                overflowPages.Clear();
            }
            return n;
        }
        finally
        {
            Exit();
        }
    }
}
