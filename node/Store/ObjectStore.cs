using System.Threading.Channels;
using Appliance.Platform.Checksums;
using Appliance.Platform.Devices;
using Appliance.Store.Alloc;
using Appliance.Store.Format;
using Appliance.Store.Index;
using Appliance.Store.Journal;
using Appliance.Store.Meta;

namespace Appliance.Store;

/// <summary>Options of a mounted store.</summary>
public sealed record StoreOptions
{
    /// <summary>Writes shorter than this go through the journal (data in the record, applied in place later);
    /// longer ones are written copy-on-write to fresh blocks beside their record. The default, one block, defers
    /// only sub-block writes (they need a read-modify-write): on flash a whole-block overwrite written once to a
    /// fresh block beats writing it twice (journal, then in place), as in Ceph's BlueStore on SSDs. A disk that
    /// seeks may prefer a larger value (e.g. 64 KiB). On a full store, an overwrite shorter than 64 KiB that finds
    /// no fresh block is deferred whatever this says.</summary>
    public int DeferredWriteMax { get; init; } = 4096;

    /// <summary>Bound on the data of transactions in flight (held in memory until written).</summary>
    public long InflightBytes { get; init; } = 64L << 20;

    /// <summary>The index's page cache (all metadata lives in the index): page buffers never exceed it (at least 16 pages).</summary>
    public long IndexCacheBytes { get; init; } = 64L << 20;

    /// <summary>Index changes held in memory (onodes, omap entries changed since the last checkpoint) before a
    /// checkpoint commits them: with the page cache, what the metadata costs in memory.</summary>
    public long DeltaBytes { get; init; } = 32L << 20;

    /// <summary>Data blocks kept in memory after a read (small reads only: a run of up to 64 KiB), so hot objects
    /// are served without the disk; 0 turns it off. Every block is still checked against its crc on each read.</summary>
    public long DataCacheBytes { get; init; } = 32L << 20;
}

/// <summary>Options of mkfs.</summary>
public sealed record MkfsOptions
{
    public Guid ClusterId { get; init; }
    public int OsdId { get; init; }

    /// <summary>The store's id (default: a fresh one). An OSD's disk takes the OSD's uuid, which the monitors check
    /// at boot so a disk cannot boot as another OSD.</summary>
    public Guid StoreId { get; init; }

    /// <summary>Erase a device that holds another store or a filesystem.</summary>
    public bool Wipe { get; init; }

    /// <summary>Journal size in bytes (default: 1/16 of the device, 256 KiB to 64 MiB).</summary>
    public long? JournalBytes { get; init; }

    /// <summary>Size of each of the two checkpoint slots (default: 1/32 of the device, 128 KiB to 1 GiB). All
    /// metadata must fit in one.</summary>
    public long? CheckpointBytes { get; init; }
}

/// <summary>An object's identity and size.</summary>
public sealed record ObjectInfo(ObjectId Id, long Size)
{
    public string Name => Id.Name;

    public uint Hash => Id.Hash;
}

/// <summary>A page of a collection's listing. <see cref="Next"/> is the cursor to pass as <c>after</c> for the
/// next page (the last id of this one), null when the listing reached the end of its range.</summary>
public sealed record ListResult(IReadOnlyList<ObjectInfo> Objects, ObjectId? Next);

/// <summary>Space and activity figures.</summary>
public sealed record StoreStats(long TotalBytes, long UsedBytes, long FreeBytes, long MetadataBytes, long MetadataCapacity,
    long JournalBytes, long Collections, long Objects, long ClientBytesWritten, long DeviceBytesWritten)
{
    /// <summary>Transactions made durable since mount.</summary>
    public long Transactions { get; init; }

    /// <summary>Journal records written since mount (one per group commit).</summary>
    public long Records { get; init; }

    /// <summary>Device flushes since mount (one per record, two per checkpoint).</summary>
    public long Flushes { get; init; }

    /// <summary>Checkpoints written since mount.</summary>
    public long Checkpoints { get; init; }

    /// <summary>Device bytes written per client byte written over the store's life (0 before any write).</summary>
    public double WriteAmplification => ClientBytesWritten == 0 ? 0 : (double)DeviceBytesWritten / ClientBytesWritten;
}

/// <summary>
/// The object store on one device. See node/Store/README.md for the on-disk layout and the invariants.
/// Mutations go through <see cref="SubmitAsync"/>; reads run concurrently with them and see every transaction
/// whose submission has returned from preparation (durable or not yet).
/// </summary>
public sealed partial class ObjectStore : IAsyncDisposable
{
    private const int B = Superblock.BlockSize;
    /// <summary>A transaction's copy-on-write data of at least this many bytes streams to the device as soon as it
    /// is published; less waits for the writer, which sends it with the record in one batch (many small
    /// transactions: one submission and one device notification per record instead of one each).</summary>
    private const int StreamCowBytes = 64 << 10;
    /// <summary>Copies of more blocks than this (512 KiB) into an aligned buffer are written piece by piece as
    /// they are copied (the device starts on the first piece while the rest is copied).</summary>
    private const int PipelineCopyBlocks = 128;

    private readonly IBlockDevice _device;
    private readonly DataCache _dataCache;
    private readonly StoreOptions _options;
    private readonly Superblock _super;
    private readonly Geometry _geo;
    private readonly uint _seed;
    private readonly MetaState _meta;
    private readonly Allocator _alloc;
    /// <summary>The ordered on-disk index (omap today); changed only by the writer, at checkpoints.</summary>
    private readonly BPlusTree _index;
    private readonly IndexPageAllocator _pages;
    /// <summary>Index pages to release once the next checkpoint is durable, beside those the tree releases (after
    /// a mount: the pages the loaded checkpoint listed as waiting; writer only).</summary>
    private List<long> _releaseAfterCheckpoint = [];
    /// <summary>The index generation each checkpoint slot refers to: pages are released up to the older one.</summary>
    private readonly long[] _slotIndexGeneration = new long[2];
    private readonly ByteBudget _budget;
    /// <summary>Bounds the journal bytes of transactions published but not yet journaled (an eighth of the journal).</summary>
    private readonly ByteBudget _journalBudget;
    /// <summary>Guards <see cref="_meta"/> and <see cref="_overlay"/> for readers against the applier.</summary>
    private readonly Lock _stateLock = new();
    /// <summary>Held while a transaction is published, and by a checkpoint while it takes its snapshot.</summary>
    private readonly SemaphoreSlim _publishGate = new(1, 1);
    /// <summary>Data written by committed or in-flight transactions that is not yet on the device at its block:
    /// reads take it from here. An entry is removed by the write that puts it on the device, only if it is still the
    /// same entry (a later transaction may have replaced it).</summary>
    private readonly Dictionary<long, ReadOnlyMemory<byte>> _overlay = [];
    private readonly Channel<Pending> _queue = Channel.CreateUnbounded<Pending>(new UnboundedChannelOptions { SingleReader = true });
    private readonly List<string> _mountNotes;
    private Task _writer = Task.CompletedTask;
    /// <summary>The in-place writes of the last committed batch, still running (writer only).</summary>
    private Task _inPlace = Task.CompletedTask;
    private ulong _generation;
    private int _slot;
    private ulong _nextSeq;
    private long _journalHead;
    private long _deviceBytes;
    private long _transactions;
    private long _records;
    private long _flushes;
    private long _checkpoints;
    /// <summary>Submitters inside <see cref="SubmitAsync"/> whose transaction is not queued yet (the writer waits
    /// a little for them: group commit).</summary>
    private int _preparing;
    /// <summary>How long the last commit took (writer only), bounding how long the writer waits to gather.</summary>
    private long _lastCommitTicks;
    private long _earlyBlocks;

    /// <summary>Blocks whose copy-on-write data started to the device while their transaction was being prepared.</summary>
    internal long EarlyBlocks => Interlocked.Read(ref _earlyBlocks);

    /// <summary>The metadata itself, for tests that damage it to see fsck report it.</summary>
    internal MetaState MetaForTests => _meta;
    private volatile Exception? _failure;
    private int _disposed;

    private ObjectStore(IBlockDevice device, StoreOptions options, Superblock super, MetaState meta, Allocator alloc, BPlusTree index,
        IndexPageAllocator pages, List<string> notes)
    {
        _index = index;
        _pages = pages;
        _device = device;
        _options = options;
        _super = super;
        _geo = super.Geometry;
        _seed = super.CrcSeed;
        _meta = meta;
        _alloc = alloc;
        _mountNotes = notes;
        _budget = new ByteBudget(Math.Max(options.InflightBytes, 1 << 20));
        _journalBudget = new ByteBudget(_geo.JournalSize / 8);
        _dataCache = new DataCache(options.DataCacheBytes);
    }

    public Superblock Superblock => _super;

    public IBlockDevice Device => _device;

    /// <summary>Creates a store on <paramref name="device"/>. Refuses a device holding another store's or a
    /// filesystem's signature unless <see cref="MkfsOptions.Wipe"/> is set.</summary>
    public static async Task<Superblock> MkfsAsync(IBlockDevice device, MkfsOptions? options = null, CancellationToken ct = default)
    {
        options ??= new MkfsOptions();
        CheckDevice(device);
        var probe = (int)Math.Min(Signatures.ProbeLength, device.Size);
        using (var head = new AlignedBuffer(probe, B))
        {
            await device.ReadAsync(0, head.Memory, ct);
            if (!options.Wipe && Signatures.Detect(head.GetSpan()) is { } what)
            {
                throw new ForeignSignatureException(device.Name, what);
            }
        }
        var geo = Geometry.For(device.Size, options.JournalBytes ?? Math.Min(64L << 20, Math.Max(256 << 10, device.Size / 16 / B * B)), options.CheckpointBytes);
        var sb = new Superblock(options.StoreId == Guid.Empty ? Guid.NewGuid() : options.StoreId, options.ClusterId, options.OsdId, geo, DateTimeOffset.UtcNow);
        var seed = sb.CrcSeed;
        // First the initial checkpoint (slot 0, generation 1, empty state) and an invalid slot 1, then the
        // superblocks: a crash before the superblocks land leaves no store, never a half one.
        var empty = new MetaState(geo.FirstDataBlock, geo.EndDataBlock);
        var payload = new ByteWriter();
        payload.I64(0);
        empty.EncodeCheckpoint(payload);
        System.Buffers.Binary.BinaryPrimitives.WriteInt64LittleEndian(payload.Span, payload.Length - 8);
        payload.U32(0);
        var root = new byte[RootDescriptor.EncodedSize];
        RootDescriptor.Empty.Encode(root, seed);
        payload.Raw(root);
        payload.U32(0);
        payload.U32(0);
        using (var slot = new AlignedBuffer(2 * B, B))
        {
            payload.Written.CopyTo(slot.GetSpan()[B..]);
            CheckpointHeader.Write(slot.GetSpan(), new CheckpointHeader.Header(1, 1, payload.Length, Crc32C.Compute(payload.Written, seed)), seed);
            await device.WriteAsync(geo.CheckpointOffset0, slot.Memory, ct);
            slot.GetSpan().Clear();
            await device.WriteAsync(geo.CheckpointOffset1, slot.Memory[..B], ct);
            // The journal's first block too, so that no record of an earlier life is even looked at.
            await device.WriteAsync(geo.JournalOffset, slot.Memory[..B], ct);
        }
        await device.FlushAsync(ct);
        using (var super = new AlignedBuffer(2 * B, B))
        {
            sb.Encode(super.GetSpan()[..B]);
            sb.Encode(super.GetSpan()[B..]);
            await device.WriteAsync(0, super.Memory, ct);
        }
        await device.FlushAsync(ct);
        return sb;
    }

    private static void CheckDevice(IBlockDevice device)
    {
        if (device.BlockSize > B || B % device.BlockSize != 0 || device.MemoryAlignment > B)
        {
            throw new ArgumentException($"{device.Name}: block size {device.BlockSize} / alignment {device.MemoryAlignment} is not supported (the store uses 4 KiB blocks)");
        }
    }

    private void ThrowIfFailed()
    {
        if (_failure is { } f)
        {
            throw new StoreFailedException($"the store on {_device.Name} stopped after an error ({f.Message}); unmount and mount it again", f);
        }
        ObjectDisposedException.ThrowIf(_disposed != 0, this);
    }

    private void Fail(Exception e)
    {
        _failure ??= e;
        _queue.Writer.TryComplete();
    }

    /// <summary>Whether the store stopped after an I/O error.</summary>
    public bool IsFailed => _failure is not null;

    /// <summary>Space and activity figures.</summary>
    public StoreStats StatFs()
    {
        lock (_stateLock)
        {
            var total = _alloc.Total * B;
            var free = _alloc.Free * B;
            // Metadata: the index's pages, which share the data area with object data.
            return new StoreStats(total, total - free, free, _pages.Owned * B, total, _geo.JournalSize,
                _meta.Collections.Count, _meta.Objects, _meta.ClientBytesWritten, _meta.DeviceBytesWritten + Interlocked.Read(ref _deviceBytes))
            {
                Transactions = Interlocked.Read(ref _transactions),
                Records = Interlocked.Read(ref _records),
                Flushes = Interlocked.Read(ref _flushes),
                Checkpoints = Interlocked.Read(ref _checkpoints),
            };
        }
    }

    /// <summary>Writes a checkpoint now (all queued transactions are included and become durable).</summary>
    public async Task CheckpointAsync(CancellationToken ct = default)
    {
        ThrowIfFailed();
        var p = new Pending(null, 0, 0);
        if (!_queue.Writer.TryWrite(p))
        {
            ThrowIfFailed();
        }
        await p.Done.Task.WaitAsync(ct);
    }

    /// <summary>Unmounts: waits for queued transactions, writes a final checkpoint, stops the writer. The device
    /// stays open (the caller owns it). After a failure it only stops.</summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }
        if (_failure is null)
        {
            var p = new Pending(null, 0, 0);
            if (_queue.Writer.TryWrite(p))
            {
                try
                {
                    await p.Done.Task;
                }
                catch (StoreException)
                {
                    // The failure is recorded; the durable state is whatever the last flush left, which mount recovers.
                }
            }
        }
        _queue.Writer.TryComplete();
        try
        {
            await _writer;
        }
        catch (Exception e) when (e is IOException or StoreException)
        {
            // Already recorded as the failure.
        }
        await _index.DisposeAsync();
    }

    /// <summary>The index's height, for tests.</summary>
    internal int IndexHeightForTests => _index.Height;

    /// <summary>The pages of the index's writable view, for tests that damage one.</summary>
    internal async Task<List<long>> IndexPagesForTestsAsync()
    {
        var pages = new List<long>();
        await _index.VisitPagesAsync(pages.Add);
        return pages;
    }

    /// <summary>The index's cache and I/O counters.</summary>
    public IndexStats IndexStats => _index.Stats;
}
