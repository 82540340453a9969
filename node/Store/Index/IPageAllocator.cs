namespace Appliance.Store.Index;

/// <summary>
/// Where index pages come from: the store implements it over its allocator (a page is a 4 KiB device block; the
/// device offset is page × 4096). The tree decides when a page may be reused (see
/// <see cref="BPlusTree.ReleaseFreedPages"/>): it calls <see cref="Free"/> only for pages that no durable root, no
/// fallback root and no open snapshot can reach, so the allocator may hand them out again at once.
/// </summary>
public interface IPageAllocator
{
    /// <summary>Fills <paramref name="pages"/> with distinct free page numbers and marks them in use. Throws
    /// <see cref="NoSpaceException"/> (nothing allocated) when there are not enough.</summary>
    void Allocate(Span<long> pages);

    /// <summary>Returns pages for reuse now.</summary>
    void Free(ReadOnlySpan<long> pages);

    /// <summary>Whether the page is in use (for <see cref="BPlusTree.CheckAsync"/>).</summary>
    bool IsAllocated(long page);
}

/// <summary>
/// A simple allocator over a range of pages (for tests and tools; the store brings its own): a bitmap, lowest free
/// page first. Not persisted: after a restart, mark the pages of the tree with
/// <see cref="MarkAllocated"/> (<see cref="BPlusTree.VisitPagesAsync"/> lists them). Not thread-safe: the tree
/// calls it under its own gate.
/// </summary>
public sealed class RegionPageAllocator(long firstPage, long pageCount) : IPageAllocator
{
    private readonly bool[] _used = new bool[pageCount];
    private long _cursor;

    public long FirstPage { get; } = firstPage;
    public long PageCount { get; } = pageCount;
    public long AllocatedCount { get; private set; }

    public void Allocate(Span<long> pages)
    {
        if (pages.Length > PageCount - AllocatedCount)
        {
            throw new NoSpaceException($"index region full: {pages.Length} pages wanted, {PageCount - AllocatedCount} free of {PageCount}");
        }
        for (var i = 0; i < pages.Length; i++)
        {
            while (_used[_cursor])
            {
                _cursor = (_cursor + 1) % PageCount;
            }
            _used[_cursor] = true;
            pages[i] = FirstPage + _cursor;
        }
        AllocatedCount += pages.Length;
    }

    public void Free(ReadOnlySpan<long> pages)
    {
        foreach (var page in pages)
        {
            var i = Index(page);
            if (!_used[i])
            {
                throw new InvalidOperationException($"page {page} freed twice");
            }
            _used[i] = false;
            _cursor = Math.Min(_cursor, i);
        }
        AllocatedCount -= pages.Length;
    }

    public bool IsAllocated(long page) => page >= FirstPage && page < FirstPage + PageCount && _used[page - FirstPage];

    /// <summary>Marks a page in use while rebuilding after a restart.</summary>
    public void MarkAllocated(long page)
    {
        var i = Index(page);
        if (_used[i])
        {
            throw new InvalidOperationException($"page {page} marked twice");
        }
        _used[i] = true;
        AllocatedCount++;
    }

    /// <summary>Every page in use, in order.</summary>
    public IEnumerable<long> AllocatedPages()
    {
        for (long i = 0; i < PageCount; i++)
        {
            if (_used[i])
            {
                yield return FirstPage + i;
            }
        }
    }

    private long Index(long page)
    {
        if (page < FirstPage || page >= FirstPage + PageCount)
        {
            throw new ArgumentOutOfRangeException(nameof(page), $"page {page} is outside {FirstPage}..{FirstPage + PageCount - 1}");
        }
        return page - FirstPage;
    }
}
