using System.Buffers;

namespace Appliance.Store.Index;

/// <summary>
/// A read-only view of one committed root. The writer goes on meanwhile (its copies go to fresh pages, and the
/// pages this root reaches are not released for reuse while the snapshot is open), so every read of the snapshot
/// sees exactly that commit. Dispose it: an open snapshot holds back the reuse of the pages later commits replace.
/// </summary>
public sealed class IndexSnapshot : IDisposable
{
    private readonly BPlusTree _tree;
    private bool _disposed;

    internal IndexSnapshot(BPlusTree tree, RootDescriptor root)
    {
        _tree = tree;
        Root = root;
    }

    /// <summary>The commit this snapshot reads.</summary>
    public RootDescriptor Root { get; }

    internal View View
    {
        get
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            return new View(Root.RootPage, Root.Height, Root.Generation);
        }
    }

    /// <summary>The value of <paramref name="key"/> in this commit, appended to <paramref name="value"/>; false if
    /// absent.</summary>
    public async ValueTask<bool> TryGetAsync(ReadOnlyMemory<byte> key, IBufferWriter<byte> value, CancellationToken ct = default)
    {
        await _tree.EnterAsync(ct);
        try
        {
            return await _tree.TryGetCoreAsync(View, key, value);
        }
        finally
        {
            _tree.Exit();
        }
    }

    /// <summary>The value of <paramref name="key"/> in this commit, or null.</summary>
    public async ValueTask<byte[]?> GetAsync(ReadOnlyMemory<byte> key, CancellationToken ct = default)
    {
        var w = new ArrayBufferWriter<byte>();
        return await TryGetAsync(key, w, ct) ? w.WrittenSpan.ToArray() : null;
    }

    /// <summary>Entries with <paramref name="from"/> ≤ key &lt; <paramref name="to"/> (no upper bound when null).</summary>
    public IndexCursor Scan(ReadOnlyMemory<byte> from, ReadOnlyMemory<byte>? to = null) => new(_tree, this, from, to);

    /// <summary>Entries whose key starts with <paramref name="prefix"/>.</summary>
    public IndexCursor ScanPrefix(ReadOnlyMemory<byte> prefix) =>
        BPlusTree.PrefixEnd(prefix.Span) is { } end ? new(_tree, this, prefix, end) : new(_tree, this, prefix, null);

    public void Dispose()
    {
        if (!_disposed)
        {
            _disposed = true;
            _tree.CloseSnapshot(Root);
        }
    }
}
