using System.Text;
using Appliance.Fs.Api;
using Appliance.Fs.Meta;

namespace Appliance.Fs.Cluster;

/// <summary>Extended attributes: kept in the inode record at the metadata PG.</summary>
public sealed partial class ClusterFileSystem
{
    public ValueTask<FsError> SetXattrAsync(FuseContext ctx, ulong nodeId, string name, ReadOnlyMemory<byte> value, int flags, CancellationToken ct) => GuardAsync(async () =>
        new FsError((await CallAsync(Req(MetaOp.SetXattr, ctx) with { Ino = nodeId, Name = name, Data = value.ToArray(), Flags = (uint)flags }, ct)).Errno));

    public ValueTask<FsResult<int>> GetXattrAsync(FuseContext ctx, ulong nodeId, string name, Memory<byte> destination, CancellationToken ct) => GuardAsync<int>(async () =>
    {
        var r = await CallAsync(Req(MetaOp.GetXattrs, ctx) with { Ino = nodeId, Name = name }, ct);
        if (!r.IsOk)
        {
            return new FsError(r.Errno);
        }
        if (!r.Inode!.Xattrs.TryGetValue(name, out var v))
        {
            return new FsError(FsErrno.ENODATA);
        }
        return Copy(v, destination);
    });

    public ValueTask<FsResult<int>> ListXattrAsync(FuseContext ctx, ulong nodeId, Memory<byte> destination, CancellationToken ct) => GuardAsync<int>(async () =>
    {
        var r = await CallAsync(Req(MetaOp.GetXattrs, ctx) with { Ino = nodeId }, ct);
        if (!r.IsOk)
        {
            return new FsError(r.Errno);
        }
        var names = new StringBuilder();
        foreach (var k in r.Inode!.Xattrs.Keys)
        {
            names.Append(k).Append('\0');
        }
        return Copy(Encoding.UTF8.GetBytes(names.ToString()), destination);
    });

    private static FsResult<int> Copy(byte[] value, Memory<byte> destination)
    {
        if (destination.Length == 0)
        {
            return value.Length;
        }
        if (value.Length > destination.Length)
        {
            return new FsError(FsErrno.ERANGE);
        }
        value.CopyTo(destination);
        return value.Length;
    }

    public ValueTask<FsError> RemoveXattrAsync(FuseContext ctx, ulong nodeId, string name, CancellationToken ct) => GuardAsync(async () =>
        new FsError((await CallAsync(Req(MetaOp.RemoveXattr, ctx) with { Ino = nodeId, Name = name }, ct)).Errno));
}
