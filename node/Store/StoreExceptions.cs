namespace Appliance.Store;

/// <summary>The base of every error the object store reports on purpose. Callers map these to errno, NBD errors or
/// exit codes in one place each.</summary>
public abstract class StoreException(string message, Exception? inner = null) : Exception(message, inner);

/// <summary>The store's on-disk structures are damaged (a bad superblock, a checkpoint that fails its checksum,
/// a journal record in the middle of the log that fails its checksum while later records are valid). Mount refuses
/// rather than guessing; run fsck to see the report.</summary>
public sealed class CorruptionException(string message, Exception? inner = null) : StoreException(message, inner);

/// <summary>A data block failed its crc32c on read: the data is not returned. The OSD repairs it from a peer.</summary>
public sealed class ChecksumException(string collection, string name, long blockIndex, long deviceOffset, uint expected, uint actual)
    : StoreException($"checksum mismatch in {collection}/{name} block {blockIndex} (device offset {deviceOffset}): stored crc32c {expected:x8}, data has {actual:x8}")
{
    public string Collection { get; } = collection;
    public string ObjectName { get; } = name;
    public long BlockIndex { get; } = blockIndex;
    public long DeviceOffset { get; } = deviceOffset;
}

/// <summary>The data area or the metadata budget is full. The transaction that hit it had no effect; the store stays
/// consistent and accepts deletes, which free space once they are durable.</summary>
public sealed class NoSpaceException(string message) : StoreException(message);

/// <summary>A transaction names a collection that does not exist; it had no effect.</summary>
public sealed class CollectionNotFoundException(string collection)
    : StoreException($"collection {collection} does not exist")
{
    public string Collection { get; } = collection;
}

/// <summary>A transaction creates a collection that exists already; it had no effect.</summary>
public sealed class CollectionExistsException(string collection)
    : StoreException($"collection {collection} exists already")
{
    public string Collection { get; } = collection;
}

/// <summary>A transaction removes a collection that still holds objects; it had no effect.</summary>
public sealed class CollectionNotEmptyException(string collection, long objects)
    : StoreException($"collection {collection} still holds {objects} objects; remove them first")
{
    public string Collection { get; } = collection;
}

/// <summary>An operation needs an object that does not exist; a transaction that hits this had no effect.</summary>
public sealed class ObjectNotFoundException(string collection, string name)
    : StoreException($"object {collection}/{name} does not exist")
{
    public string Collection { get; } = collection;
    public string ObjectName { get; } = name;
}

/// <summary>An operation would put an object where one exists (a move onto an existing object, a split into a
/// collection that holds objects of the moved range); a transaction that hits this had no effect.</summary>
public sealed class ObjectExistsException(string collection, string name)
    : StoreException($"object {collection}/{name} exists already")
{
    public string Collection { get; } = collection;
    public string ObjectName { get; } = name;
}

/// <summary>The device does not hold a store of ours (no valid superblock).</summary>
public sealed class NotAStoreException(string message) : StoreException(message);

/// <summary>mkfs found another store's or a filesystem's signature and was not asked to wipe it.</summary>
public sealed class ForeignSignatureException(string device, string what)
    : StoreException($"{device} holds {what}; add --wipe to erase it (everything on it is lost)")
{
    public string What { get; } = what;
}

/// <summary>The store stopped accepting work after an I/O error on its journal or data (EIO, a lost device). Its
/// in-memory state may be ahead of the disk: unmount and mount again, which recovers the durable state.</summary>
public sealed class StoreFailedException(string message, Exception? inner = null) : StoreException(message, inner);

/// <summary>A transaction too big for one journal record (more than an eighth of the journal); it had no effect.</summary>
public sealed class TransactionTooLargeException(string message) : StoreException(message);

/// <summary>An object's metadata (its block map and xattrs, one index value) would exceed the index's largest value
/// (1 MiB: an object of about 1 GiB fully mapped); the transaction had no effect.</summary>
public sealed class MetadataTooLargeException(string message) : StoreException(message);
