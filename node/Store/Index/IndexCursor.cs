using System.Buffers;

namespace Appliance.Store.Index;

/// <summary>
/// An ordered scan of a range of keys, over the writable view or a snapshot. <see cref="Key"/> and
/// <see cref="Value"/> are the cursor's own copies, valid until the next move. Over the writable view the cursor
/// holds no page between moves: if the view changed meanwhile, it seeks again past the last key it returned, so
/// it sees every later write and never returns a key twice. Over a snapshot nothing changes under it.
/// </summary>
public sealed class IndexCursor
{
    private readonly BPlusTree _tree;
    private readonly IndexSnapshot? _snapshot;
    private readonly byte[] _from;
    private readonly byte[]? _to;
    // Branches from the root down, with the child taken at each; then the leaf and the next cell in it.
    private readonly List<(long Page, int Index)> _stack = [];
    private readonly ArrayBufferWriter<byte> _key = new();
    private readonly ArrayBufferWriter<byte> _value = new();
    private long _leaf = -1;
    private int _next;
    private long _version = -1;
    private bool _positioned;
    private bool _started;
    private bool _done;
    private byte[]? _seekTo;

    internal IndexCursor(BPlusTree tree, IndexSnapshot? snapshot, ReadOnlyMemory<byte> from, ReadOnlyMemory<byte>? to)
    {
        _tree = tree;
        _snapshot = snapshot;
        _from = from.ToArray();
        _to = to?.ToArray();
    }

    /// <summary>The current key (after <see cref="MoveNextAsync"/> returned true).</summary>
    public ReadOnlyMemory<byte> Key => _key.WrittenMemory;

    /// <summary>The current value.</summary>
    public ReadOnlyMemory<byte> Value => _value.WrittenMemory;

    /// <summary>Skip values (range deletes read only keys).</summary>
    internal bool KeysOnly { get; init; }

    /// <summary>Moves to the next entry of the range; false at its end.</summary>
    public async ValueTask<bool> MoveNextAsync(CancellationToken ct = default)
    {
        await _tree.EnterAsync(ct);
        try
        {
            return await MoveNextCoreAsync();
        }
        finally
        {
            _tree.Exit();
        }
    }

    /// <summary>The next <see cref="MoveNextAsync"/> returns the first key ≥ <paramref name="key"/> (still within
    /// the range).</summary>
    public void Seek(ReadOnlyMemory<byte> key)
    {
        _seekTo = key.Span.SequenceCompareTo(_from) < 0 ? _from : key.ToArray();
        _positioned = false;
        _done = false;
    }

    internal async ValueTask<bool> MoveNextCoreAsync()
    {
        if (_done)
        {
            return false;
        }
        View view;
        long version;
        if (_snapshot is null)
        {
            view = _tree.WriteView;
            version = _tree.Version;
        }
        else
        {
            view = _snapshot.View;
            version = 0;
        }
        if (!_positioned || version != _version)
        {
            if (_seekTo is not null)
            {
                await SeekCoreAsync(view, _seekTo, exclusive: false);
                _seekTo = null;
            }
            else if (!_started)
            {
                await SeekCoreAsync(view, _from, exclusive: false);
            }
            else
            {
                await SeekCoreAsync(view, _key.WrittenMemory.ToArray(), exclusive: true);
            }
            _version = version;
            _positioned = true;
        }
        while (_leaf >= 0)
        {
            var f = await _tree.GetNodeAsync(_leaf, 0, view.MaxGeneration);
            int overflowLength = 0;
            long overflowFirst = -1;
            long leafGen;
            var have = false;
            try
            {
                var p = f.Span;
                leafGen = Page.Generation(p);
                if (_next < Page.Count(p))
                {
                    var k = Page.Key(p, _next);
                    if (_to is not null && k.SequenceCompareTo(_to) >= 0)
                    {
                        _done = true;
                        return false;
                    }
                    _key.ResetWrittenCount();
                    _key.Write(k);
                    _value.ResetWrittenCount();
                    if (!KeysOnly)
                    {
                        var v = Page.LeafValue(p, _next, out var overflow);
                        if (overflow)
                        {
                            (overflowLength, overflowFirst) = Page.OverflowRef(v);
                        }
                        else
                        {
                            _value.Write(v);
                        }
                    }
                    _next++;
                    have = true;
                }
            }
            finally
            {
                PageCache.Unpin(f);
            }
            if (have)
            {
                if (overflowFirst >= 0)
                {
                    await _tree.ReadOverflowAsync(overflowFirst, overflowLength, leafGen, _value);
                }
                _started = true;
                return true;
            }
            await NextLeafAsync(view);
        }
        _done = true;
        return false;
    }

    private async ValueTask SeekCoreAsync(View view, byte[] key, bool exclusive)
    {
        _stack.Clear();
        _leaf = -1;
        if (view.Root < 0)
        {
            return;
        }
        var page = view.Root;
        for (var level = view.Height - 1; level > 0; level--)
        {
            var f = await _tree.GetNodeAsync(page, level, view.MaxGeneration);
            var i = Page.ChildIndex(f.Span, key);
            _stack.Add((page, i));
            page = Page.Child(f.Span, i);
            PageCache.Unpin(f);
        }
        var leaf = await _tree.GetNodeAsync(page, 0, view.MaxGeneration);
        var index = Page.Search(leaf.Span, key, out var found);
        PageCache.Unpin(leaf);
        _leaf = page;
        _next = exclusive && found ? index + 1 : index;
    }

    /// <summary>To the first cell of the next leaf (no sibling links in a copy-on-write tree: up the stack to the
    /// first branch with a child to the right, then down its leftmost path); -1 past the last leaf.</summary>
    private async ValueTask NextLeafAsync(View view)
    {
        while (_stack.Count > 0)
        {
            var (page, index) = _stack[^1];
            var level = view.Height - _stack.Count;
            var f = await _tree.GetNodeAsync(page, level, view.MaxGeneration);
            long child = -1;
            if (index + 1 < Page.Count(f.Span))
            {
                child = Page.Child(f.Span, index + 1);
            }
            PageCache.Unpin(f);
            if (child < 0)
            {
                _stack.RemoveAt(_stack.Count - 1);
                continue;
            }
            _stack[^1] = (page, index + 1);
            for (var l = level - 1; l > 0; l--)
            {
                var b = await _tree.GetNodeAsync(child, l, view.MaxGeneration);
                _stack.Add((child, 0));
                var first = Page.Child(b.Span, 0);
                PageCache.Unpin(b);
                child = first;
            }
            _leaf = child;
            _next = 0;
            return;
        }
        _leaf = -1;
    }
}
