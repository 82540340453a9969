namespace Appliance.Store;

/// <summary>
/// An ordered list of operations over objects in collections, applied atomically by
/// <see cref="ObjectStore.SubmitAsync"/>: after any crash it is wholly present or wholly absent, and transactions
/// take effect in submission order. Data and value buffers are copied when added to the transaction (except by
/// <see cref="WriteWithoutCopy"/>).
///
/// Semantics: write, zero, truncate, touch, set-xattr and omap-set create the object when it is missing; remove,
/// clone (source), clone-range (source), remove-xattr, omap-remove and omap-clear need it to exist; every operation
/// needs its collection to exist (create it earlier in the same transaction if need be). Removing a missing xattr or
/// omap key is not an error. A transaction that breaks a rule fails as a whole with a typed
/// <see cref="StoreException"/> and has no effect.
/// </summary>
public sealed class Transaction
{
    internal abstract record Op(string Collection);

    internal sealed record CreateCollectionOp(string Collection) : Op(Collection);
    internal sealed record RemoveCollectionOp(string Collection) : Op(Collection);
    internal sealed record TouchOp(string Collection, string Name) : Op(Collection);
    // Aligned: the data lives in a pinned array placed so that every whole 4 KiB block of the object it covers starts
    // on a 4 KiB-aligned address, so the device can write it without another copy.
    internal sealed record WriteOp(string Collection, string Name, long Offset, ReadOnlyMemory<byte> Data, bool Aligned) : Op(Collection);
    internal sealed record ZeroOp(string Collection, string Name, long Offset, long Length) : Op(Collection);
    internal sealed record TruncateOp(string Collection, string Name, long Size) : Op(Collection);
    internal sealed record RemoveOp(string Collection, string Name) : Op(Collection);
    internal sealed record CloneOp(string Collection, string Source, string Destination) : Op(Collection);
    internal sealed record CloneRangeOp(string Collection, string Source, long SourceOffset, long Length, string Destination, long DestinationOffset) : Op(Collection);
    internal sealed record SetXattrOp(string Collection, string Name, string Key, ReadOnlyMemory<byte> Value) : Op(Collection);
    internal sealed record RemoveXattrOp(string Collection, string Name, string Key) : Op(Collection);
    internal sealed record OmapSetOp(string Collection, string Name, string Key, ReadOnlyMemory<byte> Value) : Op(Collection);
    internal sealed record OmapRemoveOp(string Collection, string Name, string Key) : Op(Collection);
    internal sealed record OmapClearOp(string Collection, string Name) : Op(Collection);

    private readonly List<Op> _ops = [];

    internal IReadOnlyList<Op> Ops => _ops;

    public int Count => _ops.Count;

    /// <summary>Longest collection, object, xattr or omap key name in UTF-8 bytes.</summary>
    public const int MaxNameBytes = 4096;

    private Transaction Add(Op op)
    {
        _ops.Add(op);
        return this;
    }

    private static string N(string name, string what)
    {
        ArgumentNullException.ThrowIfNull(name, what);
        if (System.Text.Encoding.UTF8.GetByteCount(name) > MaxNameBytes)
        {
            throw new ArgumentException($"{what} is longer than {MaxNameBytes} bytes", what);
        }
        return name;
    }

    private static long NonNegative(long v, string what)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(v, what);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(v, Meta.MetaState.MaxObjectSize, what);
        return v;
    }

    public Transaction CreateCollection(string collection) => Add(new CreateCollectionOp(N(collection, nameof(collection))));

    public Transaction RemoveCollection(string collection) => Add(new RemoveCollectionOp(N(collection, nameof(collection))));

    public Transaction Touch(string collection, string name) => Add(new TouchOp(N(collection, nameof(collection)), N(name, nameof(name))));

    public Transaction Write(string collection, string name, long offset, ReadOnlySpan<byte> data)
    {
        NonNegative(offset + data.Length, nameof(offset));
        var aligned = data.Length >= AlignedCopyMin;
        return Add(new WriteOp(N(collection, nameof(collection)), N(name, nameof(name)), NonNegative(offset, nameof(offset)),
            aligned ? AlignedCopy(data, offset) : data.ToArray(), aligned));
    }

    /// <summary>
    /// A write that does not copy <paramref name="data"/>: the store reads it until the transaction is durable or
    /// has failed (a cancelled wait does not end that), and the caller must not change it meanwhile nor submit the
    /// transaction again with changed data. For callers that already own a private buffer (a received message): a large write
    /// then costs one copy, into the device's aligned buffer, instead of an extra allocation and copy here.
    /// </summary>
    public Transaction WriteWithoutCopy(string collection, string name, long offset, ReadOnlyMemory<byte> data)
    {
        NonNegative(offset + data.Length, nameof(offset));
        return Add(new WriteOp(N(collection, nameof(collection)), N(name, nameof(name)), NonNegative(offset, nameof(offset)), data, false));
    }

    /// <summary>Writes at least this long are copied into pinned, block-aligned memory (large writes go
    /// copy-on-write straight from it); shorter ones into a plain array.</summary>
    internal const int AlignedCopyMin = 64 << 10;

    private const int Block = 4096;

    /// <summary>A copy of <paramref name="data"/> in a pinned array, placed so that byte i sits at an address
    /// congruent to <paramref name="offset"/> + i modulo 4 KiB: the object's whole blocks start 4 KiB-aligned.</summary>
    private static ReadOnlyMemory<byte> AlignedCopy(ReadOnlySpan<byte> data, long offset)
    {
        var array = GC.AllocateUninitializedArray<byte>(data.Length + Block, pinned: true);
        var address = (long)System.Runtime.InteropServices.Marshal.UnsafeAddrOfPinnedArrayElement(array, 0);
        var start = (int)(((offset - address) % Block + Block) % Block);
        data.CopyTo(array.AsSpan(start));
        return array.AsMemory(start, data.Length);
    }

    public Transaction Zero(string collection, string name, long offset, long length)
    {
        NonNegative(offset + length, nameof(length));
        return Add(new ZeroOp(N(collection, nameof(collection)), N(name, nameof(name)), NonNegative(offset, nameof(offset)), NonNegative(length, nameof(length))));
    }

    public Transaction Truncate(string collection, string name, long size) =>
        Add(new TruncateOp(N(collection, nameof(collection)), N(name, nameof(name)), NonNegative(size, nameof(size))));

    public Transaction Remove(string collection, string name) => Add(new RemoveOp(N(collection, nameof(collection)), N(name, nameof(name))));

    /// <summary>Makes <paramref name="destination"/> a copy of <paramref name="source"/> (data, xattrs, omap),
    /// replacing it if it exists.</summary>
    public Transaction Clone(string collection, string source, string destination) =>
        Add(new CloneOp(N(collection, nameof(collection)), N(source, nameof(source)), N(destination, nameof(destination))));

    /// <summary>Copies <paramref name="length"/> bytes of <paramref name="source"/> (zeros past its end) into
    /// <paramref name="destination"/> at <paramref name="destinationOffset"/>.</summary>
    public Transaction CloneRange(string collection, string source, long sourceOffset, long length, string destination, long destinationOffset)
    {
        NonNegative(sourceOffset + length, nameof(length));
        NonNegative(destinationOffset + length, nameof(length));
        return Add(new CloneRangeOp(N(collection, nameof(collection)), N(source, nameof(source)), NonNegative(sourceOffset, nameof(sourceOffset)),
            NonNegative(length, nameof(length)), N(destination, nameof(destination)), NonNegative(destinationOffset, nameof(destinationOffset))));
    }

    public Transaction SetXattr(string collection, string name, string key, ReadOnlySpan<byte> value) =>
        Add(new SetXattrOp(N(collection, nameof(collection)), N(name, nameof(name)), N(key, nameof(key)), value.ToArray()));

    public Transaction RemoveXattr(string collection, string name, string key) =>
        Add(new RemoveXattrOp(N(collection, nameof(collection)), N(name, nameof(name)), N(key, nameof(key))));

    public Transaction OmapSet(string collection, string name, string key, ReadOnlySpan<byte> value) =>
        Add(new OmapSetOp(N(collection, nameof(collection)), N(name, nameof(name)), N(key, nameof(key)), value.ToArray()));

    public Transaction OmapRemove(string collection, string name, string key) =>
        Add(new OmapRemoveOp(N(collection, nameof(collection)), N(name, nameof(name)), N(key, nameof(key))));

    public Transaction OmapClear(string collection, string name) =>
        Add(new OmapClearOp(N(collection, nameof(collection)), N(name, nameof(name))));

    /// <summary>Data bytes the transaction carries (for the in-flight memory budget and write amplification).</summary>
    internal long DataBytes()
    {
        long n = 0;
        foreach (var op in _ops)
        {
            n += op switch
            {
                WriteOp w => w.Data.Length,
                SetXattrOp x => x.Value.Length,
                OmapSetOp o => o.Value.Length,
                CloneRangeOp c => c.Length,
                _ => 0,
            };
        }
        return n;
    }
}
