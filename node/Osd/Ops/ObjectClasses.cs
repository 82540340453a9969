using Appliance.Osd.Backend;
using Appliance.Store;

namespace Appliance.Osd.Ops;

/// <summary>
/// What a server-side method sees: the PG's objects as they were before the request (reads), and the changes it
/// makes (recorded, applied atomically with the request's other changes, logged and replicated like any write).
/// Other objects than the request's must belong to the same PG: name them with the request's hash (or any hash that
/// maps to the PG); others are refused.
/// </summary>
public interface IMethodContext
{
    ObjectId Target { get; }

    /// <summary>The primary's clock when the request started (Unix ms): what leases are judged by. Read it, never
    /// replicate a decision that depends on another member's clock: only the method's changes are replicated.</summary>
    long NowMs { get; }

    ValueTask<ObjectMeta?> StatAsync(ObjectId oid);

    Task<byte[]> ReadAsync(ObjectId oid, long offset, int length);

    ValueTask<IReadOnlyDictionary<string, byte[]>> GetXattrsAsync(ObjectId oid);

    ValueTask<IReadOnlyList<KeyValuePair<string, byte[]>>> OmapGetAsync(ObjectId oid, string prefix, string startAfter, int limit);

    ValueTask<byte[]?> OmapGetValueAsync(ObjectId oid, string key);

    ValueTask CreateAsync(ObjectId oid);

    ValueTask WriteAsync(ObjectId oid, long offset, ReadOnlyMemory<byte> data);

    ValueTask WriteFullAsync(ObjectId oid, ReadOnlyMemory<byte> data);

    ValueTask TruncateAsync(ObjectId oid, long size);

    ValueTask RemoveAsync(ObjectId oid);

    ValueTask SetXattrAsync(ObjectId oid, string key, ReadOnlyMemory<byte> value);

    ValueTask RemoveXattrAsync(ObjectId oid, string key);

    ValueTask OmapSetAsync(ObjectId oid, IReadOnlyList<KeyValuePair<string, byte[]>> pairs);

    ValueTask OmapRemoveAsync(ObjectId oid, IReadOnlyList<string> keys);
}

/// <summary>A result and an output of a method (the output goes back to the client, at most 64 KiB).</summary>
public readonly record struct MethodResult(int Result, ReadOnlyMemory<byte> Output);

/// <summary>A class of server-side methods (as Ceph's object classes): registered in the OSD, run on the primary
/// inside a request's transaction. A method must be deterministic in what it changes given what it reads: only its
/// changes are replicated, never re-run.</summary>
public interface IObjectClass
{
    string Name { get; }

    /// <summary>Whether the method only reads (then nothing is logged, and a read capability suffices).</summary>
    bool IsReadOnly(string method);

    /// <summary>Runs <paramref name="method"/>; an unknown method returns <c>OsdResult.NotSupported</c>.</summary>
    Task<MethodResult> CallAsync(string method, IMethodContext context, ReadOnlyMemory<byte> input);
}

/// <summary>The object classes an OSD offers, by name.</summary>
public sealed class ObjectClassRegistry
{
    private readonly Dictionary<string, IObjectClass> _classes = new(StringComparer.Ordinal);

    public ObjectClassRegistry Add(IObjectClass cls)
    {
        _classes.Add(cls.Name, cls);
        return this;
    }

    public IObjectClass? Find(string name) => _classes.GetValueOrDefault(name);

    public IEnumerable<string> Names => _classes.Keys;
}
