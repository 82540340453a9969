namespace Appliance.Store;

/// <summary>
/// An ordered list of operations over objects in collections, applied atomically by
/// <see cref="ObjectStore.SubmitAsync"/>: after any crash it is wholly present or wholly absent, and transactions
/// that name a common collection take effect in submission (call) order. Data and value buffers are copied when added to the transaction (except by
/// <see cref="WriteWithoutCopy"/>).
///
/// Objects are named by <see cref="ObjectId"/> (placement hash and name; a string converts to hash 0).
/// Semantics: write, zero, truncate, touch, set-xattr and omap-set create the object when it is missing; remove,
/// clone (source), clone-range (source), remove-xattr, omap-remove, omap-remove-range, omap-clear and move (source) need it to exist; every operation
/// needs its collection to exist (create it earlier in the same transaction if need be). Removing a missing xattr or
/// omap key is not an error. A transaction that breaks a rule fails as a whole with a typed
/// <see cref="StoreException"/> and has no effect.
/// </summary>
public sealed class Transaction
{
    internal abstract record Op(string Collection);

    internal sealed record CreateCollectionOp(string Collection) : Op(Collection);
    internal sealed record RemoveCollectionOp(string Collection) : Op(Collection);
    internal sealed record TouchOp(string Collection, ObjectId Name) : Op(Collection);
    // Aligned: the data lives in a pinned array placed so that every whole 4 KiB block of the object it covers starts
    // on a 4 KiB-aligned address, so the device can write it without another copy.
    internal sealed record WriteOp(string Collection, ObjectId Name, long Offset, ReadOnlyMemory<byte> Data, bool Aligned) : Op(Collection);
    internal sealed record ZeroOp(string Collection, ObjectId Name, long Offset, long Length) : Op(Collection);
    internal sealed record TruncateOp(string Collection, ObjectId Name, long Size) : Op(Collection);
    internal sealed record RemoveOp(string Collection, ObjectId Name) : Op(Collection);
    internal sealed record CloneOp(string Collection, ObjectId Source, ObjectId Destination) : Op(Collection);
    internal sealed record CloneRangeOp(string Collection, ObjectId Source, long SourceOffset, long Length, ObjectId Destination, long DestinationOffset) : Op(Collection);
    internal sealed record SetXattrOp(string Collection, ObjectId Name, string Key, ReadOnlyMemory<byte> Value) : Op(Collection);
    internal sealed record RemoveXattrOp(string Collection, ObjectId Name, string Key) : Op(Collection);
    internal sealed record OmapSetOp(string Collection, ObjectId Name, string Key, ReadOnlyMemory<byte> Value) : Op(Collection);
    internal sealed record OmapRemoveOp(string Collection, ObjectId Name, string Key) : Op(Collection);
    internal sealed record OmapClearOp(string Collection, ObjectId Name) : Op(Collection);
    internal sealed record OmapRemoveRangeOp(string Collection, ObjectId Name, string From, string To) : Op(Collection);
    internal sealed record MoveOp(string Collection, ObjectId Name, string DestinationCollection, ObjectId Destination) : Op(Collection);
    internal sealed record SplitCollectionOp(string Collection, int Bits, uint Match, string Destination) : Op(Collection);

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

    /// <summary>Longest omap key (and omap range bound) in UTF-16 code units: omap lives in the index, whose keys
    /// are at most 1024 bytes (this key in UTF-16 after a 9-byte object prefix).</summary>
    public const int MaxOmapKeyChars = Meta.IndexKeys.MaxOmapKeyChars;

    /// <summary>Largest omap value (the index's largest value).</summary>
    public const int MaxOmapValueBytes = Index.BPlusTree.MaxValueLength;

    private static string K(string key, string what)
    {
        ArgumentNullException.ThrowIfNull(key, what);
        if (key.Length > MaxOmapKeyChars)
        {
            throw new ArgumentException($"{what} is longer than {MaxOmapKeyChars} characters (omap keys are index keys); use a shorter key", what);
        }
        return key;
    }

    private static byte[] OmapValue(ReadOnlySpan<byte> value)
    {
        if (value.Length > MaxOmapValueBytes)
        {
            throw new ArgumentException($"an omap value of {value.Length} bytes exceeds {MaxOmapValueBytes}; store it as object data", nameof(value));
        }
        return value.ToArray();
    }

    /// <summary>Longest collection name in UTF-16 code units (collections and onodes are index keys of at most 1024
    /// bytes; object names of any length up to <see cref="MaxNameBytes"/> fit beside it).</summary>
    public const int MaxCollectionChars = Meta.MetaKeys.MaxCollectionChars;

    private static string C(string collection, string what)
    {
        N(collection, what);
        if (collection.Length > MaxCollectionChars)
        {
            throw new ArgumentException($"{what} is longer than {MaxCollectionChars} characters (collections are index keys); use a shorter name", what);
        }
        return collection;
    }

    private static ObjectId I(ObjectId id, string what)
    {
        N(id.Name, what);
        return id;
    }

    private static long NonNegative(long v, string what)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(v, what);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(v, Meta.MetaState.MaxObjectSize, what);
        return v;
    }

    public Transaction CreateCollection(string collection) => Add(new CreateCollectionOp(C(collection, nameof(collection))));

    public Transaction RemoveCollection(string collection) => Add(new RemoveCollectionOp(C(collection, nameof(collection))));

    public Transaction Touch(string collection, ObjectId name) => Add(new TouchOp(C(collection, nameof(collection)), I(name, nameof(name))));

    public Transaction Write(string collection, ObjectId name, long offset, ReadOnlySpan<byte> data)
    {
        NonNegative(offset + data.Length, nameof(offset));
        var aligned = data.Length >= AlignedCopyMin;
        return Add(new WriteOp(C(collection, nameof(collection)), I(name, nameof(name)), NonNegative(offset, nameof(offset)),
            aligned ? AlignedCopy(data, offset) : data.ToArray(), aligned));
    }

    /// <summary>
    /// A write that does not copy <paramref name="data"/>: the store reads it until the transaction is durable or
    /// has failed (a cancelled wait does not end that), and the caller must not change it meanwhile nor submit the
    /// transaction again with changed data. For callers that already own a private buffer (a received message): a large write
    /// then costs one copy, into the device's aligned buffer, instead of an extra allocation and copy here.
    /// </summary>
    public Transaction WriteWithoutCopy(string collection, ObjectId name, long offset, ReadOnlyMemory<byte> data)
    {
        NonNegative(offset + data.Length, nameof(offset));
        return Add(new WriteOp(C(collection, nameof(collection)), I(name, nameof(name)), NonNegative(offset, nameof(offset)), data, false));
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

    public Transaction Zero(string collection, ObjectId name, long offset, long length)
    {
        NonNegative(offset + length, nameof(length));
        return Add(new ZeroOp(C(collection, nameof(collection)), I(name, nameof(name)), NonNegative(offset, nameof(offset)), NonNegative(length, nameof(length))));
    }

    public Transaction Truncate(string collection, ObjectId name, long size) =>
        Add(new TruncateOp(C(collection, nameof(collection)), I(name, nameof(name)), NonNegative(size, nameof(size))));

    public Transaction Remove(string collection, ObjectId name) => Add(new RemoveOp(C(collection, nameof(collection)), I(name, nameof(name))));

    /// <summary>Makes <paramref name="destination"/> a copy of <paramref name="source"/> (data, xattrs, omap),
    /// replacing it if it exists.</summary>
    public Transaction Clone(string collection, ObjectId source, ObjectId destination) =>
        Add(new CloneOp(C(collection, nameof(collection)), I(source, nameof(source)), I(destination, nameof(destination))));

    /// <summary>Copies <paramref name="length"/> bytes of <paramref name="source"/> (zeros past its end) into
    /// <paramref name="destination"/> at <paramref name="destinationOffset"/>.</summary>
    public Transaction CloneRange(string collection, ObjectId source, long sourceOffset, long length, ObjectId destination, long destinationOffset)
    {
        NonNegative(sourceOffset + length, nameof(length));
        NonNegative(destinationOffset + length, nameof(length));
        return Add(new CloneRangeOp(C(collection, nameof(collection)), I(source, nameof(source)), NonNegative(sourceOffset, nameof(sourceOffset)),
            NonNegative(length, nameof(length)), I(destination, nameof(destination)), NonNegative(destinationOffset, nameof(destinationOffset))));
    }

    public Transaction SetXattr(string collection, ObjectId name, string key, ReadOnlySpan<byte> value) =>
        Add(new SetXattrOp(C(collection, nameof(collection)), I(name, nameof(name)), N(key, nameof(key)), value.ToArray()));

    public Transaction RemoveXattr(string collection, ObjectId name, string key) =>
        Add(new RemoveXattrOp(C(collection, nameof(collection)), I(name, nameof(name)), N(key, nameof(key))));

    public Transaction OmapSet(string collection, ObjectId name, string key, ReadOnlySpan<byte> value) =>
        Add(new OmapSetOp(C(collection, nameof(collection)), I(name, nameof(name)), K(key, nameof(key)), OmapValue(value)));

    public Transaction OmapRemove(string collection, ObjectId name, string key) =>
        Add(new OmapRemoveOp(C(collection, nameof(collection)), I(name, nameof(name)), K(key, nameof(key))));

    public Transaction OmapClear(string collection, ObjectId name) =>
        Add(new OmapClearOp(C(collection, nameof(collection)), I(name, nameof(name))));

    /// <summary>Removes the omap keys from <paramref name="fromInclusive"/> up to, not including,
    /// <paramref name="toExclusive"/> (ordinal, as omap keys are ordered), in one operation whatever their number
    /// (PG log trimming). The object must exist; an empty or inverted range removes nothing.</summary>
    public Transaction OmapRemoveRange(string collection, ObjectId name, string fromInclusive, string toExclusive) =>
        Add(new OmapRemoveRangeOp(C(collection, nameof(collection)), I(name, nameof(name)), K(fromInclusive, nameof(fromInclusive)),
            K(toExclusive, nameof(toExclusive))));

    /// <summary>
    /// Moves object <paramref name="name"/> of <paramref name="collection"/> to <paramref name="destinationCollection"/>
    /// as <paramref name="destination"/> (the same id when null): data, xattrs and omap go with it, no data is copied
    /// (the onode moves). The source must exist. The destination must not: a move onto an existing object is refused
    /// with <see cref="ObjectExistsException"/> (remove it earlier in the same transaction to replace it). Both
    /// collections must exist; they may be the same (a rename).
    /// </summary>
    public Transaction Move(string collection, ObjectId name, string destinationCollection, ObjectId? destination = null)
    {
        var to = I(destination ?? name, nameof(destination));
        if (collection == destinationCollection && to == name)
        {
            throw new ArgumentException($"moving {collection}/{name} onto itself", nameof(destination));
        }
        return Add(new MoveOp(C(collection, nameof(collection)), I(name, nameof(name)), C(destinationCollection, nameof(destinationCollection)), to));
    }

    /// <summary>
    /// Moves every object of <paramref name="source"/> whose hash has <paramref name="match"/> in its low
    /// <paramref name="bits"/> bits (<c>(hash &amp; ((1 &lt;&lt; bits) - 1)) == match</c>) to
    /// <paramref name="destination"/> (PG split). Both collections must exist (create the destination earlier in
    /// the same transaction if need be), and the destination must hold no object that matches
    /// (<see cref="ObjectExistsException"/> otherwise); objects that do not match stay. The moved objects are one
    /// contiguous range of the listing order (<see cref="SortKeyRange.ForHashBits"/>), in both collections.
    ///
    /// Cost: one journal entry of fixed size whatever the number of objects (replay moves the same objects from the
    /// same state), so journal use is bounded and no object count is too large for it. Its time and memory grow with the
    /// number of moved objects: preparing it holds a draft (a few hundred bytes) per moved object, and applying it
    /// moves each onode in memory while readers wait (end to end on a memory device, 25,000 objects took about half a
    /// second on a 2-core machine). A caller that wants neither for a huge
    /// collection can split in chunks with <see cref="Move"/>, listing the range page by page.
    /// </summary>
    public Transaction SplitCollection(string source, int bits, uint match, string destination)
    {
        var mask = SortKeyRange.Mask(bits);
        if ((match & ~mask) != 0)
        {
            throw new ArgumentOutOfRangeException(nameof(match), $"match {match:x} has bits above the low {bits}");
        }
        if (source == destination)
        {
            throw new ArgumentException($"splitting {source} into itself", nameof(destination));
        }
        return Add(new SplitCollectionOp(C(source, nameof(source)), bits, match, C(destination, nameof(destination))));
    }

    /// <summary>Every collection the transaction names, sorted ordinally, once each.</summary>
    internal string[] Collections()
    {
        // The common case, every operation on one collection, without a set.
        if (_ops.Count > 0 && _ops.All(op => op is not MoveOp and not SplitCollectionOp && op.Collection == _ops[0].Collection))
        {
            return [_ops[0].Collection];
        }
        var set = new SortedSet<string>(StringComparer.Ordinal);
        foreach (var op in _ops)
        {
            set.Add(op.Collection);
            switch (op)
            {
                case MoveOp m:
                    set.Add(m.DestinationCollection);
                    break;
                case SplitCollectionOp x:
                    set.Add(x.Destination);
                    break;
            }
        }
        return [.. set];
    }

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
