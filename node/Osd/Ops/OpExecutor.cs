using System.Buffers.Binary;
using Appliance.Osd.Backend;
using Appliance.Osd.Pg;
using Appliance.Osd.Protocol;
using Appliance.Store;

namespace Appliance.Osd.Ops;

/// <summary>The outcome of running a request's sub-operations: the reply's parts, and the changes to log and apply
/// (none when <see cref="Changes"/> is empty: a read, or a request that failed).</summary>
public sealed record ExecutionResult(int Result, IReadOnlyList<OsdOpOutput> Outputs, PgTransaction Changes, IReadOnlyList<LogObject> Objects, string Message)
{
    /// <summary>How the PG's object count and bytes change if this applies.</summary>
    public long ObjectsDelta { get; init; }
    public long BytesDelta { get; init; }

    public bool IsWrite => Changes.Count > 0;
}

/// <summary>
/// Runs a request's sub-operations on the primary against the PG's objects, in order, and collects the changes. A
/// failing sub-op fails the request and nothing of it is applied. Reads (data, xattrs, omap) see the object as it was
/// before the request, so a read that follows a change to the same object in one request is refused
/// (<see cref="OsdResult.InvalidArgument"/>): put reads first. Existence and size follow the request's own changes
/// (an append after a write appends after it).
/// </summary>
public sealed class OpExecutor(IPgBackend backend, ObjectClassRegistry classes, Func<uint, bool> inPg)
{
    private readonly IPgBackend _backend = backend;
    private readonly Func<uint, bool> _inPg = inPg;

    private sealed class Tracked
    {
        public required ObjectId Oid;
        public ObjectMeta? Before;
        public bool Exists;
        public long Size;
        public bool Changed;
        public bool Removed;
        public bool DataChanged;
        public bool OmapChanged;
        public bool XattrsChanged;
    }

    private sealed class Run
    {
        public readonly Dictionary<ObjectId, Tracked> Objects = [];
        public readonly PgTransaction Txn = new();
        public readonly List<ObjectId> Order = [];
    }

    private async ValueTask<Tracked> TrackAsync(Run run, ObjectId oid, CancellationToken ct)
    {
        if (!run.Objects.TryGetValue(oid, out var t))
        {
            var meta = await _backend.StatAsync(oid, ct);
            t = new Tracked { Oid = oid, Before = meta, Exists = meta is not null, Size = meta?.Size ?? 0 };
            run.Objects[oid] = t;
            run.Order.Add(oid);
        }
        return t;
    }

    private sealed class OpException(int result, string message) : Exception(message)
    {
        public int Result { get; } = result;
    }

    private static OpException Fail(int result, string message) => new(result, message);

    public async Task<ExecutionResult> ExecuteAsync(ObjectId target, IReadOnlyList<OsdOp> ops, long nowMs, CancellationToken ct)
    {
        var run = new Run();
        var outputs = new List<OsdOpOutput>(ops.Count);
        try
        {
            var t = await TrackAsync(run, target, ct);
            foreach (var op in ops)
            {
                outputs.Add(await ExecuteOneAsync(run, t, op, nowMs, ct));
            }
        }
        catch (OpException e)
        {
            outputs.Add(new OsdOpOutput(e.Result));
            return new ExecutionResult(e.Result, outputs, new PgTransaction(), [], e.Message);
        }
        var objects = new List<LogObject>();
        long objectsDelta = 0, bytesDelta = 0;
        foreach (var oid in run.Order)
        {
            var o = run.Objects[oid];
            if (!o.Changed)
            {
                continue;
            }
            if (o.Before is null && !o.Exists)
            {
                // Created and removed within the request: nothing remains, but the mutations stay so every member
                // applies the same sequence.
            }
            objects.Add(new LogObject(oid.Name, oid.Hash, o.Exists ? LogOp.Modify : LogOp.Delete, o.Before?.Version ?? 0));
            objectsDelta += (o.Exists ? 1 : 0) - (o.Before is null ? 0 : 1);
            bytesDelta += (o.Exists ? o.Size : 0) - (o.Before?.Size ?? 0);
        }
        return new ExecutionResult(OsdResult.Ok, outputs, run.Txn, objects, "") { ObjectsDelta = objectsDelta, BytesDelta = bytesDelta };
    }

    private static void CheckReadable(Tracked t, bool data = false, bool omap = false, bool xattrs = false)
    {
        if ((data && t.DataChanged) || (omap && t.OmapChanged) || (xattrs && t.XattrsChanged) || t.Removed)
        {
            throw Fail(OsdResult.InvalidArgument, "a read must come before changes to the same object in a request");
        }
    }

    private static void RequireExists(Tracked t)
    {
        if (!t.Exists)
        {
            throw Fail(OsdResult.NotFound, $"object {t.Oid.Name} does not exist");
        }
    }

    private static void CheckKey(string key, string what)
    {
        if (key.Length == 0 || System.Text.Encoding.UTF8.GetByteCount(key) > Limits.MaxKeyBytes)
        {
            throw Fail(OsdResult.InvalidArgument, $"{what} must be 1 to {Limits.MaxKeyBytes} bytes");
        }
    }

    private static void CheckValue(int length, string what)
    {
        if (length > Limits.MaxValueBytes)
        {
            throw Fail(OsdResult.TooLarge, $"{what} values are at most {Limits.MaxValueBytes} bytes");
        }
    }

    private static long CheckExtent(ulong offset, ulong length)
    {
        if (offset > (ulong)Limits.MaxObjectSize || length > (ulong)Limits.MaxObjectSize || offset + length > (ulong)Limits.MaxObjectSize)
        {
            throw Fail(OsdResult.TooLarge, $"objects are at most {Limits.MaxObjectSize >> 20} MiB");
        }
        return (long)offset;
    }

    private void Change(Run run, Tracked t, Mutation m)
    {
        if (!_inPg(t.Oid.Hash))
        {
            throw Fail(OsdResult.InvalidArgument, $"object {t.Oid.Name} (hash {t.Oid.Hash:x8}) is not in this PG");
        }
        if (!t.Exists && m.Kind is not (MutationKind.Create or MutationKind.Remove))
        {
            run.Txn.Add(new Mutation(MutationKind.Create, t.Oid.Name, t.Oid.Hash));
        }
        run.Txn.Add(m);
        t.Changed = true;
        if (m.Kind == MutationKind.Remove)
        {
            t.Exists = false;
            t.Size = 0;
            t.Removed = true;
        }
        else
        {
            t.Exists = true;
        }
    }

    private static Mutation M(MutationKind kind, Tracked t) => new(kind, t.Oid.Name, t.Oid.Hash);

    private async Task<OsdOpOutput> ExecuteOneAsync(Run run, Tracked t, OsdOp op, long nowMs, CancellationToken ct)
    {
        switch (op.Code)
        {
            case OsdOpCode.Read:
            {
                RequireExists(t);
                CheckReadable(t, data: true);
                var offset = CheckExtent(op.Offset, 0);
                var length = op.Length == 0 ? t.Size - offset : (long)Math.Min(op.Length, (ulong)Limits.MaxPayload);
                if (length > Limits.MaxPayload)
                {
                    throw Fail(OsdResult.TooLarge, $"a read returns at most {Limits.MaxPayload >> 20} MiB; read in pieces");
                }
                var data = offset >= t.Size || length <= 0 ? [] : await _backend.ReadAsync(t.Oid, offset, (int)length, ct);
                return new OsdOpOutput(data.Length) { Data = data };
            }
            case OsdOpCode.MapExtents:
            {
                RequireExists(t);
                CheckReadable(t, data: true);
                var offset = CheckExtent(op.Offset, 0);
                var length = op.Length == 0 ? Math.Max(0, t.Size - offset) : (long)Math.Min(op.Length, (ulong)Limits.MaxObjectSize);
                var runs = await _backend.AllocatedExtentsAsync(t.Oid, offset, length, ct)
                    ?? (offset < t.Size ? [(offset, Math.Min(length, t.Size - offset))] : []);
                var b = new byte[runs.Count * 16];
                for (var i = 0; i < runs.Count; i++)
                {
                    BinaryPrimitives.WriteInt64LittleEndian(b.AsSpan(i * 16), runs[i].Offset);
                    BinaryPrimitives.WriteInt64LittleEndian(b.AsSpan(i * 16 + 8), runs[i].Length);
                }
                return new OsdOpOutput(runs.Count) { Data = b };
            }
            case OsdOpCode.Stat:
            {
                RequireExists(t);
                var b = new byte[24];
                BinaryPrimitives.WriteInt64LittleEndian(b, t.Size);
                BinaryPrimitives.WriteInt64LittleEndian(b.AsSpan(8), t.Before?.MtimeMs ?? nowMs);
                BinaryPrimitives.WriteUInt64LittleEndian(b.AsSpan(16), t.Before?.Version ?? 0);
                return new OsdOpOutput(OsdResult.Ok) { Data = b };
            }
            case OsdOpCode.GetXattr:
            {
                RequireExists(t);
                CheckReadable(t, xattrs: true);
                var all = await _backend.GetXattrsAsync(t.Oid, ct);
                return all.TryGetValue(op.Name, out var v)
                    ? new OsdOpOutput(v.Length) { Data = v }
                    : throw Fail(-61, $"object {t.Oid.Name} has no xattr {op.Name}"); // ENODATA
            }
            case OsdOpCode.GetXattrs:
            {
                RequireExists(t);
                CheckReadable(t, xattrs: true);
                var all = await _backend.GetXattrsAsync(t.Oid, ct);
                return new OsdOpOutput(OsdResult.Ok) { Pairs = [.. all.OrderBy(kv => kv.Key, StringComparer.Ordinal)] };
            }
            case OsdOpCode.OmapGet:
            {
                RequireOmap();
                RequireExists(t);
                CheckReadable(t, omap: true);
                var max = op.Length == 0 || op.Length > Limits.OmapPage ? Limits.OmapPage : (int)op.Length;
                var page = await _backend.OmapGetAsync(t.Oid, op.Name2, op.Name, max + 1, ct);
                var more = page.Count > max;
                return new OsdOpOutput(OsdResult.Ok) { Pairs = more ? [.. page.Take(max)] : page, More = more };
            }
            case OsdOpCode.OmapGetByKeys:
            {
                RequireOmap();
                RequireExists(t);
                CheckReadable(t, omap: true);
                var pairs = new List<KeyValuePair<string, byte[]>>();
                foreach (var k in op.Keys)
                {
                    if (await _backend.OmapGetValueAsync(t.Oid, k, ct) is { } v)
                    {
                        pairs.Add(new(k, v));
                    }
                }
                return new OsdOpOutput(OsdResult.Ok) { Pairs = pairs };
            }
            case OsdOpCode.AssertExists:
                RequireExists(t);
                return OsdOpOutput.Success;
            case OsdOpCode.AssertVersion:
            {
                var have = t.Exists ? t.Before?.Version ?? 0 : 0;
                if (t.Changed || have != op.Offset)
                {
                    throw Fail(OsdResult.Canceled, $"object {t.Oid.Name} is at version {have}, not {op.Offset}");
                }
                return OsdOpOutput.Success;
            }
            case OsdOpCode.CmpXattr:
            {
                CheckReadable(t, xattrs: true);
                var all = t.Exists ? await _backend.GetXattrsAsync(t.Oid, ct) : new Dictionary<string, byte[]>();
                var have = all.TryGetValue(op.Name, out var v) ? v : [];
                var equal = have.AsSpan().SequenceEqual(op.Data.Span);
                var ok = (CmpXattrMode)op.Mode switch
                {
                    CmpXattrMode.Equal => equal,
                    CmpXattrMode.NotEqual => !equal,
                    _ => throw Fail(OsdResult.InvalidArgument, $"unknown compare mode {op.Mode}"),
                };
                return ok ? OsdOpOutput.Success : throw Fail(OsdResult.Canceled, $"xattr {op.Name} of {t.Oid.Name} does not compare");
            }
            case OsdOpCode.Create:
                if (t.Exists)
                {
                    return (op.Flags & OsdOpFlags.Exclusive) != 0 ? throw Fail(OsdResult.Exists, $"object {t.Oid.Name} exists") : OsdOpOutput.Success;
                }
                Change(run, t, M(MutationKind.Create, t));
                return OsdOpOutput.Success;
            case OsdOpCode.Write:
            {
                var offset = CheckExtent(op.Offset, (ulong)op.Data.Length);
                Change(run, t, M(MutationKind.Write, t) with { Offset = offset, Data = op.Data });
                t.Size = Math.Max(t.Size, offset + op.Data.Length);
                t.DataChanged = true;
                return OsdOpOutput.Success;
            }
            case OsdOpCode.WriteFull:
                CheckExtent(0, (ulong)op.Data.Length);
                if (t.Exists && t.Size > 0)
                {
                    Change(run, t, M(MutationKind.Truncate, t) with { Offset = 0 });
                }
                Change(run, t, M(MutationKind.Write, t) with { Offset = 0, Data = op.Data });
                t.Size = op.Data.Length;
                t.DataChanged = true;
                return OsdOpOutput.Success;
            case OsdOpCode.Append:
            {
                var offset = CheckExtent((ulong)t.Size, (ulong)op.Data.Length);
                Change(run, t, M(MutationKind.Write, t) with { Offset = offset, Data = op.Data });
                t.Size = offset + op.Data.Length;
                t.DataChanged = true;
                return OsdOpOutput.Success;
            }
            case OsdOpCode.Truncate:
            {
                var size = CheckExtent(op.Offset, 0);
                Change(run, t, M(MutationKind.Truncate, t) with { Offset = size });
                t.Size = size;
                t.DataChanged = true;
                return OsdOpOutput.Success;
            }
            case OsdOpCode.Zero:
            {
                var offset = CheckExtent(op.Offset, op.Length);
                if (!t.Exists || offset >= t.Size || op.Length == 0)
                {
                    return OsdOpOutput.Success; // nothing there but zeros already
                }
                var length = Math.Min((long)op.Length, t.Size - offset);
                Change(run, t, M(MutationKind.Zero, t) with { Offset = offset, Length = length });
                t.DataChanged = true;
                return OsdOpOutput.Success;
            }
            case OsdOpCode.Delete:
                RequireExists(t);
                Change(run, t, M(MutationKind.Remove, t));
                return OsdOpOutput.Success;
            case OsdOpCode.SetXattr:
                CheckKey(op.Name, "xattr names");
                CheckValue(op.Data.Length, "xattr");
                Change(run, t, M(MutationKind.SetXattr, t) with { Key = op.Name, Data = op.Data });
                t.XattrsChanged = true;
                return OsdOpOutput.Success;
            case OsdOpCode.RmXattr:
                RequireExists(t);
                CheckKey(op.Name, "xattr names");
                Change(run, t, M(MutationKind.RmXattr, t) with { Key = op.Name });
                t.XattrsChanged = true;
                return OsdOpOutput.Success;
            case OsdOpCode.OmapSet:
                RequireOmap();
                foreach (var (k, v) in op.Pairs)
                {
                    CheckKey(k, "omap keys");
                    CheckValue(v.Length, "omap");
                }
                Change(run, t, M(MutationKind.OmapSet, t) with { Pairs = op.Pairs });
                t.OmapChanged = true;
                return OsdOpOutput.Success;
            case OsdOpCode.OmapRm:
                RequireOmap();
                RequireExists(t);
                foreach (var k in op.Keys)
                {
                    CheckKey(k, "omap keys");
                }
                Change(run, t, M(MutationKind.OmapRm, t) with { Keys = op.Keys });
                t.OmapChanged = true;
                return OsdOpOutput.Success;
            case OsdOpCode.OmapClear:
                RequireOmap();
                RequireExists(t);
                Change(run, t, M(MutationKind.OmapClear, t));
                t.OmapChanged = true;
                return OsdOpOutput.Success;
            case OsdOpCode.OmapRmRange:
                RequireOmap();
                RequireExists(t);
                if (string.CompareOrdinal(op.Name, op.Name2) > 0)
                {
                    throw Fail(OsdResult.InvalidArgument, "an omap range must not end before it starts");
                }
                Change(run, t, M(MutationKind.OmapRmRange, t) with { Key = op.Name, Key2 = op.Name2 });
                t.OmapChanged = true;
                return OsdOpOutput.Success;
            case OsdOpCode.Call:
            {
                var cls = classes.Find(op.Name) ?? throw Fail(OsdResult.NotSupported, $"no object class {op.Name}");
                var context = new MethodContext(this, run, t.Oid, nowMs, ct);
                var result = await cls.CallAsync(op.Name2, context, op.Data);
                if (result.Result < 0)
                {
                    throw Fail(result.Result, $"{op.Name}.{op.Name2} failed: {OsdResult.Describe(result.Result)}");
                }
                if (result.Output.Length > Limits.MaxValueBytes)
                {
                    throw Fail(OsdResult.TooLarge, $"{op.Name}.{op.Name2} returned more than {Limits.MaxValueBytes} bytes");
                }
                return new OsdOpOutput(result.Result) { Data = result.Output };
            }
            default:
                throw Fail(OsdResult.NotSupported, $"operation {(ushort)op.Code} is not supported here");
        }
    }

    private void RequireOmap()
    {
        if (!_backend.SupportsOmap)
        {
            throw Fail(OsdResult.NotSupported, "omap is not supported on erasure-coded pools; keep it in a replicated pool");
        }
    }

    /// <summary>A method's view: reads go to the backend (the state before the request); changes are recorded in the
    /// request's run, checked like a client's sub-ops.</summary>
    private sealed class MethodContext(OpExecutor x, Run run, ObjectId target, long nowMs, CancellationToken ct) : IMethodContext
    {
        public ObjectId Target => target;

        public long NowMs => nowMs;

        private async ValueTask<Tracked> GetAsync(ObjectId oid)
        {
            if (!x._inPg(oid.Hash))
            {
                throw Fail(OsdResult.InvalidArgument, $"object {oid.Name} (hash {oid.Hash:x8}) is not in this PG");
            }
            return await x.TrackAsync(run, oid, ct);
        }

        public async ValueTask<ObjectMeta?> StatAsync(ObjectId oid)
        {
            var t = await GetAsync(oid);
            return t.Exists ? new ObjectMeta(t.Size, t.Before?.Version ?? 0, t.Before?.MtimeMs ?? 0) : null;
        }

        public async Task<byte[]> ReadAsync(ObjectId oid, long offset, int length)
        {
            var t = await GetAsync(oid);
            CheckReadable(t, data: true);
            return t.Exists ? await x._backend.ReadAsync(oid, offset, length, ct) : throw Fail(OsdResult.NotFound, $"object {oid.Name} does not exist");
        }

        public async ValueTask<IReadOnlyDictionary<string, byte[]>> GetXattrsAsync(ObjectId oid)
        {
            var t = await GetAsync(oid);
            CheckReadable(t, xattrs: true);
            return t.Exists ? await x._backend.GetXattrsAsync(oid, ct) : new Dictionary<string, byte[]>();
        }

        public async ValueTask<IReadOnlyList<KeyValuePair<string, byte[]>>> OmapGetAsync(ObjectId oid, string prefix, string startAfter, int limit)
        {
            var t = await GetAsync(oid);
            CheckReadable(t, omap: true);
            return t.Exists ? await x._backend.OmapGetAsync(oid, prefix, startAfter, limit, ct) : [];
        }

        public async ValueTask<byte[]?> OmapGetValueAsync(ObjectId oid, string key)
        {
            var t = await GetAsync(oid);
            CheckReadable(t, omap: true);
            return t.Exists ? await x._backend.OmapGetValueAsync(oid, key, ct) : null;
        }

        public async ValueTask CreateAsync(ObjectId oid)
        {
            var t = await GetAsync(oid);
            if (!t.Exists)
            {
                x.Change(run, t, M(MutationKind.Create, t));
            }
        }

        public async ValueTask WriteAsync(ObjectId oid, long offset, ReadOnlyMemory<byte> data)
        {
            var t = await GetAsync(oid);
            CheckExtent((ulong)offset, (ulong)data.Length);
            x.Change(run, t, M(MutationKind.Write, t) with { Offset = offset, Data = data });
            t.Size = Math.Max(t.Size, offset + data.Length);
            t.DataChanged = true;
        }

        public async ValueTask WriteFullAsync(ObjectId oid, ReadOnlyMemory<byte> data)
        {
            var t = await GetAsync(oid);
            CheckExtent(0, (ulong)data.Length);
            if (t.Exists && t.Size > 0)
            {
                x.Change(run, t, M(MutationKind.Truncate, t) with { Offset = 0 });
            }
            x.Change(run, t, M(MutationKind.Write, t) with { Offset = 0, Data = data });
            t.Size = data.Length;
            t.DataChanged = true;
        }

        public async ValueTask TruncateAsync(ObjectId oid, long size)
        {
            var t = await GetAsync(oid);
            CheckExtent((ulong)size, 0);
            x.Change(run, t, M(MutationKind.Truncate, t) with { Offset = size });
            t.Size = size;
            t.DataChanged = true;
        }

        public async ValueTask RemoveAsync(ObjectId oid)
        {
            var t = await GetAsync(oid);
            if (t.Exists)
            {
                x.Change(run, t, M(MutationKind.Remove, t));
            }
        }

        public async ValueTask SetXattrAsync(ObjectId oid, string key, ReadOnlyMemory<byte> value)
        {
            CheckKey(key, "xattr names");
            CheckValue(value.Length, "xattr");
            var t = await GetAsync(oid);
            x.Change(run, t, M(MutationKind.SetXattr, t) with { Key = key, Data = value });
            t.XattrsChanged = true;
        }

        public async ValueTask RemoveXattrAsync(ObjectId oid, string key)
        {
            var t = await GetAsync(oid);
            if (t.Exists)
            {
                x.Change(run, t, M(MutationKind.RmXattr, t) with { Key = key });
                t.XattrsChanged = true;
            }
        }

        public async ValueTask OmapSetAsync(ObjectId oid, IReadOnlyList<KeyValuePair<string, byte[]>> pairs)
        {
            foreach (var (k, v) in pairs)
            {
                CheckKey(k, "omap keys");
                CheckValue(v.Length, "omap");
            }
            var t = await GetAsync(oid);
            x.Change(run, t, M(MutationKind.OmapSet, t) with { Pairs = pairs });
            t.OmapChanged = true;
        }

        public async ValueTask OmapRemoveAsync(ObjectId oid, IReadOnlyList<string> keys)
        {
            var t = await GetAsync(oid);
            if (t.Exists)
            {
                x.Change(run, t, M(MutationKind.OmapRm, t) with { Keys = keys });
                t.OmapChanged = true;
            }
        }
    }
}
