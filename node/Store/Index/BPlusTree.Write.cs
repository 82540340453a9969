using System.Buffers.Binary;

namespace Appliance.Store.Index;

public sealed partial class BPlusTree
{
    /// <summary>Sets <paramref name="key"/> to <paramref name="value"/> in the writable view; true if the key is
    /// new. Throws <see cref="KeyTooLargeException"/> / <see cref="ValueTooLargeException"/> (no effect). Any other
    /// failure (no space, a damaged page, an I/O error) leaves the transaction unusable until
    /// <see cref="RollbackAsync"/>.</summary>
    public async ValueTask<bool> PutAsync(ReadOnlyMemory<byte> key, ReadOnlyMemory<byte> value, CancellationToken ct = default)
    {
        CheckKey(key.Length);
        if (value.Length > MaxValueLength)
        {
            throw new ValueTooLargeException(value.Length);
        }
        await EnterAsync(ct);
        try
        {
            ThrowIfUnusable();
            try
            {
                return await PutCoreAsync(key, value);
            }
            catch
            {
                _faulted = true;
                throw;
            }
        }
        finally
        {
            Exit();
        }
    }

    /// <summary>Removes <paramref name="key"/> from the writable view; true if it was there.</summary>
    public async ValueTask<bool> DeleteAsync(ReadOnlyMemory<byte> key, CancellationToken ct = default)
    {
        CheckKey(key.Length);
        await EnterAsync(ct);
        try
        {
            ThrowIfUnusable();
            try
            {
                return await DeleteCoreAsync(key);
            }
            catch
            {
                _faulted = true;
                throw;
            }
        }
        finally
        {
            Exit();
        }
    }

    /// <summary>Removes every key with <paramref name="from"/> ≤ key &lt; <paramref name="to"/> (no upper bound
    /// when null) from the writable view; returns how many. Costs one descent per key (pages are copied once per
    /// transaction, then changed in place).</summary>
    public async ValueTask<long> DeleteRangeAsync(ReadOnlyMemory<byte> from, ReadOnlyMemory<byte>? to, CancellationToken ct = default)
    {
        await EnterAsync(ct);
        try
        {
            ThrowIfUnusable();
            try
            {
                var cursor = new IndexCursor(this, null, from, to) { KeysOnly = true };
                long n = 0;
                // The cursor notices each delete (the version moves) and seeks past the key it returned last.
                while (await cursor.MoveNextCoreAsync())
                {
                    ct.ThrowIfCancellationRequested();
                    if (await DeleteCoreAsync(cursor.Key))
                    {
                        n++;
                    }
                }
                return n;
            }
            catch
            {
                _faulted = true;
                throw;
            }
        }
        finally
        {
            Exit();
        }
    }

    private static void CheckKey(int length)
    {
        if (length > MaxKeyLength)
        {
            throw new KeyTooLargeException(length);
        }
    }

    private async ValueTask<bool> PutCoreAsync(ReadOnlyMemory<byte> key, ReadOnlyMemory<byte> value)
    {
        _version++;
        _changed = true;
        int cellLength;
        if (Page.LeafCellSize(key.Length, value.Length) <= Page.MaxCell)
        {
            cellLength = Page.WriteLeafCell(_leafCell, key.Span, value.Span, overflow: false);
        }
        else
        {
            var first = await WriteOverflowAsync(value);
            var reference = new byte[Page.OverflowRefSize];
            BinaryPrimitives.WriteUInt32LittleEndian(reference, (uint)value.Length);
            BinaryPrimitives.WriteInt64LittleEndian(reference.AsSpan(4), first);
            cellLength = Page.WriteLeafCell(_leafCell, key.Span, reference, overflow: true);
        }

        if (_root < 0)
        {
            var f = await NewPageAsync(PageKind.Leaf, 0);
            Page.Append(f.Span, _leafCell.AsSpan(0, cellLength));
            PageCache.Unpin(f);
            _root = f.PageNo;
            _height = 1;
            _count++;
            return true;
        }

        var leafPage = await DescendAsync(key);
        var leaf = await GetWritableAsync(leafPage, 0);
        var leafNew = leaf.PageNo;
        bool found;
        (int Length, long First)? oldOverflow = null;
        byte[]? separator = null;
        long right = -1;
        try
        {
            var i = Page.Search(leaf.Span, key.Span, out found);
            if (found)
            {
                var old = Page.LeafValue(leaf.Span, i, out var overflow);
                if (overflow)
                {
                    oldOverflow = Page.OverflowRef(old);
                }
                Page.RemoveAt(leaf.Span, i);
            }
            if (!Page.TryInsert(leaf.Span, i, _leafCell.AsSpan(0, cellLength)))
            {
                var r = await NewPageAsync(PageKind.Leaf, 0);
                try
                {
                    separator = Page.SplitInsert(leaf.Span, r.Span, i, _leafCell.AsSpan(0, cellLength));
                    right = r.PageNo;
                }
                finally
                {
                    PageCache.Unpin(r);
                }
            }
        }
        finally
        {
            PageCache.Unpin(leaf);
        }
        if (oldOverflow is { } o)
        {
            await FreeOverflowAsync(o.First, o.Length);
        }
        if (!found)
        {
            _count++;
        }
        await PropagateInsertAsync(leafPage, leafNew, separator, right);
        return !found;
    }

    private async ValueTask<bool> DeleteCoreAsync(ReadOnlyMemory<byte> key)
    {
        if (_root < 0)
        {
            return false;
        }
        var leafPage = await DescendAsync(key);
        // Look first: a key that is not there copies nothing.
        var f = await GetNodeAsync(leafPage, 0, _txnGen);
        Page.Search(f.Span, key.Span, out var present);
        PageCache.Unpin(f);
        if (!present)
        {
            return false;
        }
        _version++;
        _changed = true;
        var leaf = await GetWritableAsync(leafPage, 0);
        var leafNew = leaf.PageNo;
        (int Length, long First)? oldOverflow = null;
        bool under, empty;
        try
        {
            var i = Page.Search(leaf.Span, key.Span, out _);
            var old = Page.LeafValue(leaf.Span, i, out var overflow);
            if (overflow)
            {
                oldOverflow = Page.OverflowRef(old);
            }
            Page.RemoveAt(leaf.Span, i);
            under = Page.LiveBytes(leaf.Span) < Underflow;
            empty = Page.Count(leaf.Span) == 0;
        }
        finally
        {
            PageCache.Unpin(leaf);
        }
        if (oldOverflow is { } o)
        {
            await FreeOverflowAsync(o.First, o.Length);
        }
        _count--;
        await PropagateDeleteAsync(leafPage, leafNew, under, empty);
        return true;
    }

    /// <summary>From the root to the leaf that holds (or would hold) the key; the branches and the child taken at
    /// each go to <see cref="_path"/>. Returns the leaf's page.</summary>
    private async ValueTask<long> DescendAsync(ReadOnlyMemory<byte> key)
    {
        _path.Clear();
        var page = _root;
        var maxGen = _txnGen;
        for (var level = _height - 1; level > 0; level--)
        {
            var f = await GetNodeAsync(page, level, maxGen);
            var i = Page.ChildIndex(f.Span, key.Span);
            _path.Add((page, i));
            maxGen = Page.Generation(f.Span);
            page = Page.Child(f.Span, i);
            PageCache.Unpin(f);
        }
        return page;
    }

    /// <summary>
    /// Carries a changed child up the path: each parent is made writable and pointed at the child's new page, and
    /// takes the separator of a split (splitting in turn). Stops as soon as a parent needs no change (the child
    /// was already this transaction's page, so the parent is too). A root split grows the tree by one level.
    /// </summary>
    private async ValueTask PropagateInsertAsync(long childOld, long childNew, byte[]? separator, long right)
    {
        for (var d = _path.Count - 1; d >= 0; d--)
        {
            if (childNew == childOld && separator is null)
            {
                return;
            }
            var (page, index) = _path[d];
            var level = _path.Count - d;
            var pf = await GetWritableAsync(page, level);
            var parentNew = pf.PageNo;
            byte[]? upSeparator = null;
            long upRight = -1;
            try
            {
                Page.SetChild(pf.Span, index, childNew);
                if (separator is not null)
                {
                    var n = Page.WriteBranchCell(_branchCell, separator, right);
                    if (!Page.TryInsert(pf.Span, index + 1, _branchCell.AsSpan(0, n)))
                    {
                        var r = await NewPageAsync(PageKind.Branch, level);
                        try
                        {
                            upSeparator = Page.SplitInsert(pf.Span, r.Span, index + 1, _branchCell.AsSpan(0, n));
                            upRight = r.PageNo;
                        }
                        finally
                        {
                            PageCache.Unpin(r);
                        }
                    }
                }
            }
            finally
            {
                PageCache.Unpin(pf);
            }
            childOld = page;
            childNew = parentNew;
            separator = upSeparator;
            right = upRight;
        }
        _root = childNew;
        if (separator is not null)
        {
            var r = await NewPageAsync(PageKind.Branch, _height);
            var n = Page.WriteBranchCell(_branchCell, [], childNew);
            Page.Append(r.Span, _branchCell.AsSpan(0, n));
            n = Page.WriteBranchCell(_branchCell, separator, right);
            Page.Append(r.Span, _branchCell.AsSpan(0, n));
            PageCache.Unpin(r);
            _root = r.PageNo;
            _height++;
        }
    }

    /// <summary>
    /// Carries a shrunk child up the path: an empty child leaves its parent; one under a quarter full merges with a
    /// neighbour when both fit one page (no redistribution: pages may stay underfull, never empty). At the top, an
    /// empty root empties the tree and a branch root with one child gives way to it.
    /// </summary>
    private async ValueTask PropagateDeleteAsync(long childOld, long childNew, bool under, bool empty)
    {
        for (var d = _path.Count - 1; d >= 0; d--)
        {
            if (childNew == childOld && !under && !empty)
            {
                return;
            }
            var (page, index) = _path[d];
            var level = _path.Count - d;
            var pf = await GetWritableAsync(page, level);
            var parentNew = pf.PageNo;
            try
            {
                Page.SetChild(pf.Span, index, childNew);
                if (empty)
                {
                    Page.RemoveBranchEntry(pf.Span, index);
                    FreePage(childNew);
                }
                else if (under)
                {
                    await TryMergeAsync(pf, index, level - 1);
                }
                under = Page.LiveBytes(pf.Span) < Underflow;
                empty = Page.Count(pf.Span) == 0;
            }
            finally
            {
                PageCache.Unpin(pf);
            }
            childOld = page;
            childNew = parentNew;
        }
        _root = childNew;
        if (empty)
        {
            FreePage(_root);
            _root = -1;
            _height = 0;
            return;
        }
        while (_height > 1)
        {
            var f = await GetNodeAsync(_root, _height - 1, _txnGen);
            var only = Page.Count(f.Span) == 1 ? Page.Child(f.Span, 0) : -1;
            PageCache.Unpin(f);
            if (only < 0)
            {
                break;
            }
            FreePage(_root);
            _root = only;
            _height--;
        }
    }

    /// <summary>Merges child <paramref name="index"/> of the (writable, pinned) parent with its left neighbour, or
    /// its right one if it is the first, when their cells fit one page. A branch merge brings the parent's
    /// separator down as the key of the right page's first child.</summary>
    private async ValueTask TryMergeAsync(Frame parent, int index, int childLevel)
    {
        if (Page.Count(parent.Span) < 2)
        {
            return;
        }
        var li = index > 0 ? index - 1 : index;
        var ri = li + 1;
        var leftPage = Page.Child(parent.Span, li);
        var rightPage = Page.Child(parent.Span, ri);
        var separator = childLevel > 0 ? Page.Key(parent.Span, ri).ToArray() : [];
        var rf = await GetNodeAsync(rightPage, childLevel, _txnGen);
        try
        {
            var lf = await GetNodeAsync(leftPage, childLevel, _txnGen);
            var need = Page.LiveBytes(lf.Span) + Page.LiveBytes(rf.Span) + separator.Length;
            PageCache.Unpin(lf);
            if (need > Page.CellSpace)
            {
                return;
            }
            var lw = await GetWritableAsync(leftPage, childLevel);
            try
            {
                var n = Page.Count(rf.Span);
                for (var j = 0; j < n; j++)
                {
                    if (childLevel > 0 && j == 0)
                    {
                        var len = Page.WriteBranchCell(_branchCell, separator, Page.Child(rf.Span, 0));
                        Page.Append(lw.Span, _branchCell.AsSpan(0, len));
                    }
                    else
                    {
                        Page.Append(lw.Span, Page.Cell(rf.Span, j));
                    }
                }
                Page.SetChild(parent.Span, li, lw.PageNo);
            }
            finally
            {
                PageCache.Unpin(lw);
            }
        }
        finally
        {
            PageCache.Unpin(rf);
        }
        FreePage(rightPage);
        Page.RemoveBranchEntry(parent.Span, ri);
    }

    /// <summary>
    /// The page, pinned and writable by this transaction: itself if this transaction wrote it, else a copy on a
    /// fresh page (the original is freed once no durable root or snapshot needs it). The caller points the parent
    /// at the returned frame's page.
    /// </summary>
    private async ValueTask<Frame> GetWritableAsync(long page, int level)
    {
        var f = await GetNodeAsync(page, level, _txnGen);
        if (Page.Generation(f.Span) == _txnGen)
        {
            // Ours already; it may have been spilled, so the caller's change must be written again.
            f.Dirty = true;
            return f;
        }
        Frame copy;
        try
        {
            copy = await NewPageAsync(PageKind.Leaf, 0);
            f.Span.CopyTo(copy.Span);
            Page.SetPageNumber(copy.Span, copy.PageNo);
            Page.SetGeneration(copy.Span, _txnGen);
        }
        finally
        {
            PageCache.Unpin(f);
        }
        FreePage(page);
        return copy;
    }

    /// <summary>A fresh page of this transaction, pinned, initialised empty.</summary>
    private async ValueTask<Frame> NewPageAsync(PageKind kind, int level)
    {
        Span<long> one = [0];
        _allocator.Allocate(one);
        var page = one[0];
        _txnAllocated.Add(page);
        var f = await _cache.CreateAsync(page);
        Page.Init(f.Span, kind, level, page, _txnGen);
        return f;
    }

    /// <summary>A page the writable view no longer uses: this transaction's own pages are free at once (nothing
    /// durable refers to them); committed pages wait for <see cref="ReleaseFreedPages"/>.</summary>
    private void FreePage(long page)
    {
        if (_txnAllocated.Remove(page))
        {
            _cache.Drop(page, force: false);
            _allocator.Free([page]);
        }
        else
        {
            _txnFreed.Add(page);
        }
    }

    /// <summary>Writes a value to a chain of fresh overflow pages; returns the first.</summary>
    private async ValueTask<long> WriteOverflowAsync(ReadOnlyMemory<byte> value)
    {
        var n = (value.Length + Page.OverflowCapacity - 1) / Page.OverflowCapacity;
        var pages = new long[n];
        _allocator.Allocate(pages);
        foreach (var p in pages)
        {
            _txnAllocated.Add(p);
        }
        for (var i = 0; i < n; i++)
        {
            var f = await _cache.CreateAsync(pages[i]);
            var chunk = value.Span.Slice(i * Page.OverflowCapacity, Math.Min(Page.OverflowCapacity, value.Length - i * Page.OverflowCapacity));
            Page.Init(f.Span, PageKind.Overflow, 0, pages[i], _txnGen);
            Page.SetNext(f.Span, i + 1 < n ? pages[i + 1] : -1);
            Page.SetUsed(f.Span, chunk.Length);
            chunk.CopyTo(Page.Payload(f.Span));
            PageCache.Unpin(f);
        }
        return pages[0];
    }

    private async ValueTask FreeOverflowAsync(long first, int length)
    {
        var pages = new List<long>();
        await ReadOverflowAsync(first, length, _txnGen, null, pages);
        foreach (var p in pages)
        {
            FreePage(p);
        }
    }
}
