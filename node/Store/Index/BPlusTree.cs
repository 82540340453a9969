using System.Buffers;
using Appliance.Platform.Devices;

namespace Appliance.Store.Index;

/// <summary>Settings of a <see cref="BPlusTree"/>.</summary>
public sealed record IndexOptions
{
    /// <summary>The page cache's budget: page buffers never exceed it (at least
    /// <see cref="BPlusTree.MinCachePages"/> pages).</summary>
    public long CacheBytes { get; init; } = 16 << 20;

    /// <summary>Seed of every page's crc32c (the store passes crc32c of its uuid), so pages of another store never
    /// validate. Must be the same at every open.</summary>
    public uint CrcSeed { get; init; }
}

/// <summary>
/// An ordered map of byte strings (memcmp order) on 4 KiB pages of a device: a copy-on-write B+tree (as LMDB's and
/// Voron's) behind a bounded page cache. See README.md in this folder for the format and the invariants.
///
/// One writable view (the tree itself: <see cref="PutAsync"/>, <see cref="DeleteAsync"/>,
/// <see cref="DeleteRangeAsync"/>, read-your-writes <see cref="TryGetAsync"/> and <see cref="Scan"/>) and any number
/// of read-only <see cref="IndexSnapshot"/>s of committed roots. A write never touches a page a committed root
/// reaches: the first change to a page in a transaction copies it to a fresh page, and the path above it follows, so
/// <see cref="CommitAsync"/> writes exactly the pages that changed. Thread-safe: every call takes one async gate.
/// </summary>
public sealed partial class BPlusTree : IAsyncDisposable
{
    /// <summary>The longest key.</summary>
    public const int MaxKeyLength = 1024;

    /// <summary>The longest value. Values that do not fit in the leaf next to their key (see
    /// <see cref="MaxInlineValue"/>) go to a chain of overflow pages.</summary>
    public const int MaxValueLength = 1 << 20;

    /// <summary>The smallest page cache (an operation pins at most 4 pages at once).</summary>
    public const int MinCachePages = 16;

    /// <summary>Leaves and branches with fewer live bytes than this try to merge with a neighbour.</summary>
    private const int Underflow = Page.CellSpace / 4;

    private readonly IBlockDevice _device;
    private readonly IPageAllocator _allocator;
    private readonly PageCache _cache;
    private readonly SemaphoreSlim _gate = new(1, 1);
    // Scratch for the cell being inserted (leaf) and for separators going up (branch); used under the gate.
    private readonly byte[] _leafCell = new byte[Page.Size];
    private readonly byte[] _branchCell = new byte[Page.Size];
    private readonly List<(long Page, int Index)> _path = [];
    // The open transaction: pages it allocated (free at once if it drops them) and committed pages it replaced
    // (free only once a later root is durable and no snapshot reads them).
    private readonly HashSet<long> _txnAllocated = [];
    private readonly List<long> _txnFreed = [];
    private readonly List<(long Generation, long[] Pages)> _waiting = [];
    private readonly SortedDictionary<long, int> _snapshots = [];
    private RootDescriptor _committed;
    private long _root;
    private int _height;
    private long _count;
    private long _txnGen;
    private long _durable;
    private long _version;
    private bool _changed;
    private bool _faulted;
    private bool _disposed;

    private BPlusTree(IBlockDevice device, IPageAllocator allocator, RootDescriptor root, IndexOptions options)
    {
        if (Page.Size % device.BlockSize != 0 || Page.Size % device.MemoryAlignment != 0)
        {
            throw new ArgumentException($"{device.Name}: block size {device.BlockSize} and alignment {device.MemoryAlignment} must divide {Page.Size}");
        }
        _device = device;
        _allocator = allocator;
        CrcSeed = options.CrcSeed;
        _cache = new PageCache(device, options.CacheBytes, options.CrcSeed, Stats);
        _committed = root;
        _root = root.RootPage;
        _height = root.Height;
        _count = root.Count;
        _txnGen = root.Generation + 1;
        _durable = root.Generation;
    }

    /// <summary>An empty tree (nothing is written until the first commit).</summary>
    public static BPlusTree Create(IBlockDevice device, IPageAllocator allocator, IndexOptions? options = null) =>
        new(device, allocator, RootDescriptor.Empty, options ?? new IndexOptions());

    /// <summary>
    /// The tree of a committed root. Reads one page: the root, which must be the page that commit wrote (number,
    /// generation, crc, level), else <see cref="PageCorruptionException"/>. The allocator must already count the
    /// tree's pages as used (the store's does; see <see cref="VisitPagesAsync"/> to rebuild one).
    /// </summary>
    public static async ValueTask<BPlusTree> OpenAsync(IBlockDevice device, IPageAllocator allocator, RootDescriptor root,
        IndexOptions? options = null, CancellationToken ct = default)
    {
        var tree = new BPlusTree(device, allocator, root, options ?? new IndexOptions());
        try
        {
            if (root.RootPage >= 0)
            {
                var f = await tree._cache.GetAsync(root.RootPage, root.Generation);
                try
                {
                    var p = f.Span;
                    var expected = root.Height == 1 ? PageKind.Leaf : PageKind.Branch;
                    if (Page.Generation(p) != root.Generation || Page.StoredCrc(p) != root.RootCrc || Page.Kind(p) != expected
                        || Page.Level(p) != root.Height - 1 || Page.Count(p) == 0)
                    {
                        throw new PageCorruptionException(root.RootPage,
                            $"is not the root of commit {root.Generation}: {Page.Kind(p)} level {Page.Level(p)} generation {Page.Generation(p)} crc {Page.StoredCrc(p):x8} "
                            + $"with {Page.Count(p)} cells (expected {expected} level {root.Height - 1} generation {root.Generation} crc {root.RootCrc:x8})");
                    }
                }
                finally
                {
                    PageCache.Unpin(f);
                }
            }
            return tree;
        }
        catch
        {
            await tree.DisposeAsync();
            throw;
        }
    }

    public uint CrcSeed { get; }

    /// <summary>Cache and I/O counters.</summary>
    public IndexStats Stats { get; } = new();

    /// <summary>The last committed root.</summary>
    public RootDescriptor Committed => _committed;

    /// <summary>Entries in the writable view.</summary>
    public long Count => _count;

    /// <summary>Levels of the writable view (0 when empty, 1 for a single leaf).</summary>
    public int Height => _height;

    /// <summary>Whether the writable view differs from the last commit.</summary>
    public bool HasChanges => _changed;

    /// <summary>The largest value kept inline in the leaf for a key of <paramref name="keyLength"/> bytes; longer
    /// values go to overflow pages (one 4 KiB page per 4048 bytes).</summary>
    public static int MaxInlineValue(int keyLength) => Page.MaxCell - Page.LeafCellHeader - keyLength;

    internal long Version => _version;

    internal long WriteGeneration => _txnGen;

    /// <summary>
    /// Makes the writable view the next committed root: writes the dirty pages (only the pages this transaction
    /// changed that are not already on the device from a spill), flushes the device, and returns the descriptor to
    /// persist. The previous root stays intact on the device: a crash before the caller has made the new
    /// descriptor durable leaves the previous one valid. Pages this commit replaced wait for
    /// <see cref="ReleaseFreedPages"/>. Without changes, returns the last descriptor and writes nothing.
    /// </summary>
    public async ValueTask<RootDescriptor> CommitAsync(CancellationToken ct = default)
    {
        await _gate.WaitAsync(ct);
        try
        {
            ThrowIfUnusable();
            if (!_changed)
            {
                return _committed;
            }
            try
            {
                await _cache.WriteDirtyAsync();
                await _device.FlushAsync(ct);
                uint crc = 0;
                if (_root >= 0)
                {
                    var f = await _cache.GetAsync(_root, _txnGen);
                    crc = Page.StoredCrc(f.Span);
                    PageCache.Unpin(f);
                }
                _committed = new RootDescriptor(_root, _height, _txnGen, _count, crc);
            }
            catch
            {
                _faulted = true;
                throw;
            }
            if (_txnFreed.Count > 0)
            {
                _waiting.Add((_txnGen, [.. _txnFreed]));
            }
            _txnFreed.Clear();
            _txnAllocated.Clear();
            _txnGen++;
            _changed = false;
            return _committed;
        }
        finally
        {
            _gate.Release();
        }
    }

    /// <summary>
    /// Drops every change since the last commit (also the way out after a failed write or commit): the pages the
    /// transaction allocated go back to the allocator, and the writable view is the committed root again.
    /// </summary>
    public async ValueTask RollbackAsync(CancellationToken ct = default)
    {
        await _gate.WaitAsync(ct);
        try
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            _version++;
            _cache.ResetPins();
            foreach (var page in _txnAllocated)
            {
                _cache.Drop(page, force: true);
            }
            _allocator.Free([.. _txnAllocated]);
            _txnAllocated.Clear();
            _txnFreed.Clear();
            _root = _committed.RootPage;
            _height = _committed.Height;
            _count = _committed.Count;
            _changed = false;
            _faulted = false;
        }
        finally
        {
            _gate.Release();
        }
    }

    /// <summary>
    /// Says that the descriptor of commit <paramref name="durableGeneration"/> is durable and is the oldest root a
    /// crash could fall back to: pages replaced by that commit and earlier ones go back to the allocator, except
    /// those an open snapshot of an older commit still reads (they follow when it is disposed).
    /// </summary>
    public void ReleaseFreedPages(long durableGeneration)
    {
        _gate.Wait();
        try
        {
            if (durableGeneration > _committed.Generation)
            {
                throw new ArgumentOutOfRangeException(nameof(durableGeneration), $"commit {durableGeneration} has not happened (last is {_committed.Generation})");
            }
            _durable = Math.Max(_durable, durableGeneration);
            ReleaseWaiting();
        }
        finally
        {
            _gate.Release();
        }
    }

    /// <summary>The pages replaced by each commit and not yet released (a copy), oldest commit first: what the store
    /// lists in its checkpoint so that mount need not read the tree.</summary>
    internal List<(long Generation, long[] Pages)> WaitingByGeneration()
    {
        _gate.Wait();
        try
        {
            return [.. _waiting];
        }
        finally
        {
            _gate.Release();
        }
    }

    /// <summary>Pages replaced by commits and not yet released.</summary>
    public long WaitingPages
    {
        get
        {
            _gate.Wait();
            try
            {
                return _waiting.Sum(w => (long)w.Pages.Length);
            }
            finally
            {
                _gate.Release();
            }
        }
    }

    // Pages replaced by commit G were in root G-1, not in root G: reusable once root G is durable (no crash can
    // bring back G-1) and every open snapshot reads root G or later.
    private void ReleaseWaiting()
    {
        var oldestSnapshot = _snapshots.Count > 0 ? _snapshots.First().Key : long.MaxValue;
        while (_waiting.Count > 0 && _waiting[0].Generation <= _durable && _waiting[0].Generation <= oldestSnapshot)
        {
            var pages = _waiting[0].Pages;
            foreach (var page in pages)
            {
                _cache.Drop(page, force: false);
            }
            _allocator.Free(pages);
            _waiting.RemoveAt(0);
        }
    }

    /// <summary>A read-only view of the last committed root; its pages stay as they are until it is disposed.</summary>
    public IndexSnapshot OpenSnapshot()
    {
        _gate.Wait();
        try
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            var gen = _committed.Generation;
            _snapshots[gen] = _snapshots.GetValueOrDefault(gen) + 1;
            return new IndexSnapshot(this, _committed);
        }
        finally
        {
            _gate.Release();
        }
    }

    internal void CloseSnapshot(RootDescriptor root)
    {
        _gate.Wait();
        try
        {
            if (_snapshots[root.Generation] == 1)
            {
                _snapshots.Remove(root.Generation);
            }
            else
            {
                _snapshots[root.Generation]--;
            }
            if (!_disposed)
            {
                ReleaseWaiting();
            }
        }
        finally
        {
            _gate.Release();
        }
    }

    /// <summary>The value of <paramref name="key"/> in the writable view (read-your-writes), appended to
    /// <paramref name="value"/>; false if absent.</summary>
    public async ValueTask<bool> TryGetAsync(ReadOnlyMemory<byte> key, IBufferWriter<byte> value, CancellationToken ct = default)
    {
        await _gate.WaitAsync(ct);
        try
        {
            ThrowIfUnusable();
            return await TryGetCoreAsync(new View(_root, _height, _txnGen), key, value);
        }
        finally
        {
            _gate.Release();
        }
    }

    /// <summary>The value of <paramref name="key"/> in the writable view, or null.</summary>
    public async ValueTask<byte[]?> GetAsync(ReadOnlyMemory<byte> key, CancellationToken ct = default)
    {
        var w = new ArrayBufferWriter<byte>();
        return await TryGetAsync(key, w, ct) ? w.WrittenSpan.ToArray() : null;
    }

    /// <summary>Entries of the writable view with <paramref name="from"/> ≤ key &lt; <paramref name="to"/> (no upper
    /// bound when null), in key order. The cursor sees writes made while it is open: after a change it continues
    /// after the last key it returned.</summary>
    public IndexCursor Scan(ReadOnlyMemory<byte> from, ReadOnlyMemory<byte>? to = null) => new(this, null, from, to);

    /// <summary>Entries of the writable view whose key starts with <paramref name="prefix"/>.</summary>
    public IndexCursor ScanPrefix(ReadOnlyMemory<byte> prefix) =>
        PrefixEnd(prefix.Span) is { } end ? new(this, null, prefix, end) : new(this, null, prefix, null);

    /// <summary>The least key greater than every key with the prefix, or null when there is none (all 0xff).</summary>
    internal static byte[]? PrefixEnd(ReadOnlySpan<byte> prefix)
    {
        var i = prefix.LastIndexOfAnyExcept((byte)0xff);
        if (i < 0)
        {
            return null;
        }
        var end = prefix[..(i + 1)].ToArray();
        end[i]++;
        return end;
    }

    internal async ValueTask EnterAsync(CancellationToken ct)
    {
        await _gate.WaitAsync(ct);
        if (_disposed)
        {
            _gate.Release();
            throw new ObjectDisposedException(nameof(BPlusTree));
        }
    }

    internal void Exit() => _gate.Release();

    internal View WriteView
    {
        get
        {
            ThrowIfUnusable();
            return new View(_root, _height, _txnGen);
        }
    }

    private void ThrowIfUnusable()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (_faulted)
        {
            throw new InvalidOperationException("the index's open transaction failed part-way; roll it back (RollbackAsync) before using the writable view");
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _gate.WaitAsync();
        try
        {
            if (!_disposed)
            {
                _disposed = true;
                _cache.Dispose();
            }
        }
        finally
        {
            _gate.Release();
        }
    }
}

/// <summary>What a read walks: a root, its height, and the newest generation a page of it may have.</summary>
internal readonly record struct View(long Root, int Height, long MaxGeneration);
