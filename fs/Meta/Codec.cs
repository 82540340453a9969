using System.Buffers.Binary;
using System.Text;

namespace Appliance.Fs.Meta;

/// <summary>Thrown when a stored or received metadata record does not decode (wrong version, torn, too short).</summary>
public sealed class MetaFormatException(string message) : Exception(message);

/// <summary>
/// Little-endian writer of metadata records. This project depends on nothing but the BCL (it runs inside the OSD
/// and in the mount), so it carries its own tiny codec instead of node/Wire's.
/// </summary>
public sealed class MetaWriter
{
    private byte[] _buffer = new byte[256];
    private int _length;

    public int Length => _length;

    private Span<byte> Take(int n)
    {
        if (_length + n > _buffer.Length)
        {
            Array.Resize(ref _buffer, Math.Max(_buffer.Length * 2, _length + n));
        }
        var span = _buffer.AsSpan(_length, n);
        _length += n;
        return span;
    }

    public void U8(byte v) => Take(1)[0] = v;

    public void U32(uint v) => BinaryPrimitives.WriteUInt32LittleEndian(Take(4), v);

    public void U64(ulong v) => BinaryPrimitives.WriteUInt64LittleEndian(Take(8), v);

    public void I64(long v) => BinaryPrimitives.WriteInt64LittleEndian(Take(8), v);

    public void Time(MetaTime t)
    {
        I64(t.Seconds);
        U32(t.Nanoseconds);
    }

    public void Bytes(ReadOnlySpan<byte> b)
    {
        U32((uint)b.Length);
        b.CopyTo(Take(b.Length));
    }

    public void String(string s)
    {
        var n = Encoding.UTF8.GetByteCount(s);
        U32((uint)n);
        Encoding.UTF8.GetBytes(s, Take(n));
    }

    public byte[] ToArray() => _buffer.AsSpan(0, _length).ToArray();
}

/// <summary>Reads what <see cref="MetaWriter"/> wrote; every read checks the remaining length.</summary>
public ref struct MetaReader(ReadOnlySpan<byte> data)
{
    private readonly ReadOnlySpan<byte> _data = data;
    private int _at;

    public readonly bool End => _at == _data.Length;

    private ReadOnlySpan<byte> Take(int n)
    {
        if (n < 0 || _data.Length - _at < n)
        {
            throw new MetaFormatException($"a metadata record ends early (needs {n} bytes at {_at} of {_data.Length})");
        }
        var s = _data.Slice(_at, n);
        _at += n;
        return s;
    }

    public byte U8() => Take(1)[0];

    public uint U32() => BinaryPrimitives.ReadUInt32LittleEndian(Take(4));

    public ulong U64() => BinaryPrimitives.ReadUInt64LittleEndian(Take(8));

    public long I64() => BinaryPrimitives.ReadInt64LittleEndian(Take(8));

    public MetaTime Time()
    {
        var s = I64();
        var ns = U32();
        return ns < 1_000_000_000 ? new MetaTime(s, ns) : throw new MetaFormatException($"nanoseconds {ns} out of range");
    }

    public byte[] Bytes() => Take(Count()).ToArray();

    public string String() => Encoding.UTF8.GetString(Take(Count()));

    private int Count()
    {
        var n = U32();
        return n <= int.MaxValue ? (int)n : throw new MetaFormatException($"length {n} out of range");
    }

    /// <summary>The format version byte, refused when newer than this code reads.</summary>
    public byte Version(byte newest, string what)
    {
        var v = U8();
        return v >= 1 && v <= newest ? v : throw new MetaFormatException($"{what} has format version {v}; this build reads 1 to {newest}");
    }
}
