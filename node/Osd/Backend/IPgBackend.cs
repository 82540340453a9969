using Appliance.Osd.Pg;
using Appliance.Osd.Protocol;
using Appliance.Store;

namespace Appliance.Osd.Backend;

/// <summary>An object as the PG sees it: size, version (the PG version counter of its last change) and mtime.</summary>
public readonly record struct ObjectMeta(long Size, ulong Version, long MtimeMs);

/// <summary>
/// How a PG stores its objects across its members: the one seam between replicated and erasure-coded pools (as
/// Ceph's PGBackend). Peering, the PG log, op ordering and recovery decisions are the PG's and shared; a backend
/// reads objects, applies a logged change on every member, and copies an object's state to a member that lacks it.
/// Calls for one PG come from its primary, in version order for <see cref="SubmitAsync"/>.
/// </summary>
public interface IPgBackend
{
    ValueTask<ObjectMeta?> StatAsync(ObjectId oid, CancellationToken ct);

    Task<byte[]> ReadAsync(ObjectId oid, long offset, int length, CancellationToken ct);

    /// <summary>Clients' xattrs (without the store's prefix).</summary>
    ValueTask<IReadOnlyDictionary<string, byte[]>> GetXattrsAsync(ObjectId oid, CancellationToken ct);

    ValueTask<IReadOnlyList<KeyValuePair<string, byte[]>>> OmapGetAsync(ObjectId oid, string prefix, string startAfter, int limit, CancellationToken ct);

    ValueTask<byte[]?> OmapGetValueAsync(ObjectId oid, string key, CancellationToken ct);

    /// <summary>The allocated (offset, length) runs of the object's data within the range, in order; null when the
    /// backend cannot tell (then the whole object counts as data). Callers have checked that the object exists.</summary>
    ValueTask<IReadOnlyList<(long Offset, long Length)>?> AllocatedExtentsAsync(ObjectId oid, long offset, long length, CancellationToken ct) =>
        ValueTask.FromResult<IReadOnlyList<(long Offset, long Length)>?>(null);

    /// <summary>Whether omap operations work in this pool (erasure-coded pools refuse them, as Ceph's do).</summary>
    bool SupportsOmap { get; }

    /// <summary>
    /// Applies <paramref name="txn"/> with its log entry on every member of <paramref name="acting"/> (this OSD
    /// included). Ordering happens before this returns (the caller holds the PG's ordering gate): the returned task
    /// completes once every member has it durable, and faults if any member failed or left.
    /// </summary>
    Task SubmitAsync(PgTransaction txn, PgLogEntry entry, IReadOnlyList<int> acting, uint interval, (Eversion From, Eversion To)? trim, PgInfo? info);
}
