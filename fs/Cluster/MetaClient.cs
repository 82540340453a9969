using Appliance.Client;
using Appliance.Fs.Meta;
using Appliance.Osd.Protocol;

namespace Appliance.Fs.Cluster;

/// <summary>
/// Metadata calls of one filesystem: each request goes to the `fsmeta` class on the filesystem's superblock object
/// in its metadata pool (placed by the locator, see <see cref="MetaObjects"/>), with a deadline. A reply comes after
/// the change is durable on every member of the PG's acting set.
/// </summary>
public sealed class MetaClient
{
    private readonly IoContext _pool;
    private readonly TimeSpan _timeout;

    public MetaClient(IoContext metaPool, string fsName, TimeSpan timeout)
    {
        _pool = metaPool.WithLocator(MetaObjects.Locator(fsName));
        FsName = fsName;
        _timeout = timeout;
    }

    public string FsName { get; }

    /// <summary>The superblock object's name (what `fs create` formats and `fs rm` removes).</summary>
    public string SuperObject => MetaObjects.Super(FsName);

    public async Task<MetaReply> CallAsync(MetaRequest req, CancellationToken ct)
    {
        var method = MetaOps.IsReadOnly(req.Op) ? MetaObjects.QueryMethod : MetaObjects.RunMethod;
        var reply = await _pool.ExecuteAsync(SuperObject, [OsdOp.Call(MetaObjects.ClassName, method, req.Encode())], _timeout, ct);
        var data = reply.Outputs.Count > 0 ? reply.Outputs[0].Data : default;
        if (data.Length > 0)
        {
            return MetaReply.Decode(data.Span);
        }
        if (method == MetaObjects.QueryMethod)
        {
            throw new OsdProtocolException($"the metadata class gave no reply to {req.Op}");
        }
        // A resend of an applied change answered from the PG log, whose copy of the reply was too long to keep: the
        // change happened; read back what it returned. (An inode it released stays on the orphan list until a sweep.)
        return req.Op switch
        {
            MetaOp.Make => await CallAsync(new MetaRequest(MetaOp.Lookup, req.Caller, req.Now) { Ino = req.Ino, Name = req.Name }, ct),
            MetaOp.Link or MetaOp.Rename => await CallAsync(new MetaRequest(MetaOp.Lookup, req.Caller, req.Now) { Ino = req.Ino2, Name = req.Name2 }, ct),
            MetaOp.Format or MetaOp.Unlink or MetaOp.RmDir or MetaOp.Purge or MetaOp.SetLock or MetaOp.RenewLease => new MetaReply(0),
            // A paged release: the same page again is harmless (what it released stays released).
            MetaOp.EndLease or MetaOp.SweepLeases => new MetaReply(0) { More = true, Next = req.Ino },
            // The range an append got cannot be read back (the size may have grown since): never guessed.
            MetaOp.Append => throw new OsdProtocolException("the metadata PG applied an append but kept no reply to say where; the data was not written"),
            _ => await CallAsync(new MetaRequest(MetaOp.GetAttr, req.Caller, req.Now) { Ino = req.Ino }, ct),
        };
    }

    /// <summary>Formats the filesystem (its superblock and root directory); EEXIST when it exists.</summary>
    public Task<MetaReply> FormatAsync(uint rootMode, uint uid, uint gid, CancellationToken ct) =>
        CallAsync(new MetaRequest(MetaOp.Format, Caller.Root, MetaTime.FromDateTime(DateTime.UtcNow)) { Mode = rootMode, Uid = uid, Gid = gid }, ct);

    /// <summary>Every object of the filesystem's metadata (for `fs rm`): names through the locator context.</summary>
    public IoContext Pool => _pool;
}
