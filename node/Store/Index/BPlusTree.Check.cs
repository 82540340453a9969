using Appliance.Platform.Devices;

namespace Appliance.Store.Index;

/// <summary>What <see cref="BPlusTree.CheckAsync"/> found.</summary>
/// <param name="Errors">Every violation, one line each, naming the page; empty when the tree is sound.</param>
/// <param name="Pages">Pages the writable view reaches (branches, leaves, overflow pages).</param>
/// <param name="WaitingPages">Pages replaced by commits (or by the open transaction) and not yet released to the
/// allocator. The allocator's pages of this tree should be exactly <paramref name="Pages"/> ∪ these.</param>
/// <param name="Entries">Entries found in the leaves.</param>
public sealed record IndexCheckReport(IReadOnlyList<string> Errors, IReadOnlySet<long> Pages, IReadOnlySet<long> WaitingPages, long Entries)
{
    public bool Clean => Errors.Count == 0;
}

public sealed partial class BPlusTree
{
    /// <summary>
    /// fsck of the writable view: reads every page from the device (or the open transaction's copy in memory, if it
    /// has not been written yet) and checks that each is valid (magic, version, own number, generation, crc), is
    /// reached exactly once, sits at its level, holds keys in order within the bounds its parent's separators give,
    /// is no newer than its parent, that branches start with an empty key, that overflow chains are as long as
    /// their values, that the entry count and the root match the descriptor, and that the allocator holds every
    /// page in use or waiting for release. Memory: one entry per page of the tree.
    /// </summary>
    public async ValueTask<IndexCheckReport> CheckAsync(CancellationToken ct = default)
    {
        await EnterAsync(ct);
        try
        {
            var errors = new List<string>();
            var visited = new HashSet<long>();
            var stack = new Stack<CheckItem>();
            long entries = 0;
            using var buffer = new AlignedBuffer(Page.Size, Page.Size);
            if (_root >= 0)
            {
                stack.Push(new CheckItem(_root, _height - 1, _txnGen, null, null, -1, 0));
            }
            else if (_height != 0 || _count != 0)
            {
                errors.Add($"empty tree with height {_height} and count {_count}");
            }
            while (stack.Count > 0)
            {
                ct.ThrowIfCancellationRequested();
                var item = stack.Pop();
                var where = item.Parent < 0 ? "the root" : $"under page {item.Parent}";
                if (!visited.Add(item.Page))
                {
                    errors.Add($"page {item.Page} ({where}) is reached a second time");
                    continue;
                }
                if (!_allocator.IsAllocated(item.Page))
                {
                    errors.Add($"page {item.Page} ({where}) is in the tree but free in the allocator");
                }
                string? error;
                if (_cache.DirtyFrame(item.Page) is { } dirty)
                {
                    dirty.Span.CopyTo(buffer.GetSpan());
                    error = null;
                }
                else
                {
                    error = await _cache.ReadUncachedAsync(item.Page, buffer, _txnGen);
                }
                if (error is not null)
                {
                    errors.Add($"page {item.Page} ({where}): {error}");
                    continue;
                }
                entries += CheckPage(buffer.GetSpan(), item, where, errors, stack);
            }
            if (entries != _count)
            {
                errors.Add($"the leaves hold {entries} entries, the tree counts {_count}{(errors.Count > 0 ? " (pages that failed their checks, and what is below them, are not counted)" : "")}");
            }
            if (!_changed && _root >= 0 && visited.Contains(_root))
            {
                var f = await _cache.GetAsync(_root, _txnGen);
                if (Page.Generation(f.Span) != _committed.Generation || Page.StoredCrc(f.Span) != _committed.RootCrc)
                {
                    errors.Add($"root page {_root} has generation {Page.Generation(f.Span)} crc {Page.StoredCrc(f.Span):x8}, the descriptor says {_committed.Generation} {_committed.RootCrc:x8}");
                }
                PageCache.Unpin(f);
            }
            var waiting = new HashSet<long>();
            foreach (var (gen, pages) in _waiting)
            {
                foreach (var p in pages)
                {
                    CheckWaiting(p, $"replaced by commit {gen}", visited, waiting, errors);
                }
            }
            foreach (var p in _txnFreed)
            {
                CheckWaiting(p, "replaced by the open transaction", visited, waiting, errors);
            }
            return new IndexCheckReport(errors, visited, waiting, entries);
        }
        finally
        {
            Exit();
        }
    }

    private void CheckWaiting(long page, string why, HashSet<long> visited, HashSet<long> waiting, List<string> errors)
    {
        if (!waiting.Add(page))
        {
            errors.Add($"page {page} ({why}) waits for release twice");
        }
        if (visited.Contains(page))
        {
            errors.Add($"page {page} ({why}) waits for release but the tree still uses it");
        }
        if (!_allocator.IsAllocated(page))
        {
            errors.Add($"page {page} ({why}) waits for release but the allocator has it free already");
        }
    }

    /// <summary>Checks one validated page at its place; pushes its children. Returns its entries.</summary>
    private static long CheckPage(ReadOnlySpan<byte> p, CheckItem item, string where, List<string> errors, Stack<CheckItem> stack)
    {
        var page = item.Page;
        var gen = Page.Generation(p);
        if (gen > item.MaxGeneration)
        {
            errors.Add($"page {page} ({where}) has generation {gen}, newer than its parent's {item.MaxGeneration}");
        }
        if (item.OverflowRemaining > 0)
        {
            var want = Math.Min(item.OverflowRemaining, Page.OverflowCapacity);
            if (Page.Kind(p) != PageKind.Overflow || Page.Used(p) != want)
            {
                errors.Add($"page {page} ({where}): expected an overflow page holding {want} bytes, found a {Page.Kind(p)} holding {Page.Used(p)}");
                return 0;
            }
            var rest = item.OverflowRemaining - want;
            if (rest > 0 && Page.Next(p) >= 0)
            {
                stack.Push(item with { Page = Page.Next(p), OverflowRemaining = rest });
            }
            else if (rest > 0 || Page.Next(p) != -1)
            {
                errors.Add($"page {page} ({where}): overflow chain has next {Page.Next(p)} with {rest} bytes of the value left");
            }
            return 0;
        }
        var expected = item.Level == 0 ? PageKind.Leaf : PageKind.Branch;
        if (Page.Kind(p) != expected || Page.Level(p) != item.Level)
        {
            errors.Add($"page {page} ({where}): expected a {expected} at level {item.Level}, found a {Page.Kind(p)} at level {Page.Level(p)}");
            return 0;
        }
        var count = Page.Count(p);
        if (count == 0)
        {
            errors.Add($"page {page} ({where}) is empty");
            return 0;
        }
        ReadOnlySpan<byte> previous = default;
        for (var i = 0; i < count; i++)
        {
            var key = Page.Key(p, i);
            if (key.Length > MaxKeyLength)
            {
                errors.Add($"page {page} ({where}) cell {i}: key of {key.Length} bytes");
            }
            var isFirstSeparator = expected == PageKind.Branch && i == 0;
            if (isFirstSeparator)
            {
                if (key.Length != 0)
                {
                    errors.Add($"page {page} ({where}): the first cell of a branch has a key ({Hex(key)})");
                }
            }
            else
            {
                if (i > (expected == PageKind.Branch ? 1 : 0) && key.SequenceCompareTo(previous) <= 0)
                {
                    errors.Add($"page {page} ({where}) cell {i}: key {Hex(key)} is not after the previous {Hex(previous)}");
                }
                // A separator equal to the low bound would leave the child before it an empty range.
                var low = item.Low is null ? 1 : key.SequenceCompareTo(item.Low);
                if ((expected == PageKind.Branch ? low <= 0 : low < 0) || (item.High is not null && key.SequenceCompareTo(item.High) >= 0))
                {
                    errors.Add($"page {page} ({where}) cell {i}: key {Hex(key)} is outside the range "
                        + $"[{(item.Low is null ? "-" : Hex(item.Low))}, {(item.High is null ? "-" : Hex(item.High))}) its parent gives");
                }
                previous = key;
            }
            if (expected == PageKind.Branch)
            {
                var low = i == 0 ? item.Low : key.ToArray();
                var high = i + 1 < count ? Page.Key(p, i + 1).ToArray() : item.High;
                stack.Push(new CheckItem(Page.Child(p, i), item.Level - 1, gen, low, high, page, 0));
            }
            else if (Page.LeafValue(p, i, out var overflow) is var v && overflow)
            {
                var (length, first) = Page.OverflowRef(v);
                if (length <= MaxInlineValue(key.Length) || length > MaxValueLength || first < 0)
                {
                    errors.Add($"page {page} ({where}) cell {i}: overflow reference of {length} bytes at page {first} is out of range");
                }
                else
                {
                    stack.Push(new CheckItem(first, 0, gen, null, null, page, length));
                }
            }
        }
        return expected == PageKind.Leaf ? count : 0;
    }

    /// <summary>A key for a message: hex, long keys cut in the middle.</summary>
    private static string Hex(ReadOnlySpan<byte> key) =>
        key.Length <= 40 ? Convert.ToHexString(key) : $"{Convert.ToHexString(key[..16])}..({key.Length} bytes)..{Convert.ToHexString(key[^16..])}";

    /// <summary>A page to check and what its parent says about it. <see cref="OverflowRemaining"/> &gt; 0: an
    /// overflow page with that many bytes of the value left.</summary>
    private readonly record struct CheckItem(long Page, int Level, long MaxGeneration, byte[]? Low, byte[]? High, long Parent, int OverflowRemaining);
}
