using System.Text;
using Appliance.Wire.Codec;

namespace Appliance.Monitor.Storage;

/// <summary>One change of a batch: a put (Value not null) or a delete (Value null).</summary>
public readonly record struct BatchOp(string Prefix, string Key, byte[]? Value)
{
    public bool IsDelete => Value is null;
}

/// <summary>
/// Puts and deletes across prefixes that <see cref="MonitorStore.Apply"/> makes durable all together or not at all.
/// Later operations on the same key win. Values are copied when added, so the caller may reuse its buffers.
/// </summary>
public sealed class WriteBatch
{
    /// <summary>Longest prefix or key, in UTF-8 bytes.</summary>
    public const int MaxNameBytes = 1024;
    /// <summary>Largest value (16 MiB): monitor values are maps and log entries, never bulk data.</summary>
    public const int MaxValueBytes = 16 << 20;
    /// <summary>Largest encoded batch (64 MiB).</summary>
    public const int MaxBatchBytes = 64 << 20;

    private readonly List<BatchOp> _ops = [];
    private long _bytes;

    public IReadOnlyList<BatchOp> Ops => _ops;

    public int Count => _ops.Count;

    public WriteBatch Put(string prefix, string key, ReadOnlySpan<byte> value)
    {
        CheckName(prefix, nameof(prefix));
        CheckName(key, nameof(key));
        if (value.Length > MaxValueBytes)
        {
            throw new ArgumentException($"a monitor store value is at most {MaxValueBytes} bytes, not {value.Length} ({prefix}/{key})", nameof(value));
        }
        Add(new BatchOp(prefix, key, value.ToArray()));
        return this;
    }

    public WriteBatch Delete(string prefix, string key)
    {
        CheckName(prefix, nameof(prefix));
        CheckName(key, nameof(key));
        Add(new BatchOp(prefix, key, null));
        return this;
    }

    private void Add(BatchOp op)
    {
        var size = 16L + (2 * MaxNameBytes) + (op.Value?.Length ?? 0);
        if (_bytes + size > MaxBatchBytes)
        {
            throw new ArgumentException($"a monitor store batch is at most {MaxBatchBytes} bytes; split it");
        }
        _bytes += size;
        _ops.Add(op);
    }

    private static void CheckName(string name, string what)
    {
        ArgumentNullException.ThrowIfNull(name, what);
        if (name.Length == 0 || Encoding.UTF8.GetByteCount(name) > MaxNameBytes)
        {
            throw new ArgumentException($"a monitor store {what} is 1 to {MaxNameBytes} bytes of UTF-8, not '{(name.Length > 40 ? name[..40] + "..." : name)}'", what);
        }
    }

    private const byte Version = 1;
    private const byte OpPut = 1;
    private const byte OpDelete = 2;

    /// <summary>The log payload: struct v1 { u32 count; count × (u8 op, string prefix, string key, [bytes value]) }.</summary>
    internal void Encode(WireWriter w)
    {
        var mark = w.BeginStruct(Version, 1);
        w.WriteU32((uint)_ops.Count);
        foreach (var op in _ops)
        {
            w.WriteU8(op.IsDelete ? OpDelete : OpPut);
            w.WriteString(op.Prefix);
            w.WriteString(op.Key);
            if (!op.IsDelete)
            {
                w.WriteBytes(op.Value);
            }
        }
        w.EndStruct(mark);
    }

    /// <summary>Decodes a payload; throws <see cref="WireFormatException"/> on bytes that do not decode.</summary>
    internal static WriteBatch Decode(ReadOnlySpan<byte> payload)
    {
        var r = new WireReader(payload);
        var scope = r.BeginStruct(Version, "monitor store batch");
        var count = r.ReadU32();
        var batch = new WriteBatch();
        for (var i = 0u; i < count; i++)
        {
            var kind = r.ReadU8();
            var prefix = r.ReadString(MaxNameBytes);
            var key = r.ReadString(MaxNameBytes);
            switch (kind)
            {
                case OpPut:
                    batch._ops.Add(new BatchOp(prefix, key, r.ReadBytes(MaxValueBytes).ToArray()));
                    break;
                case OpDelete:
                    batch._ops.Add(new BatchOp(prefix, key, null));
                    break;
                default:
                    throw new WireFormatException($"unknown batch operation {kind}");
            }
        }
        r.EndStruct(scope);
        r.ExpectEnd("monitor store batch");
        return batch;
    }
}
