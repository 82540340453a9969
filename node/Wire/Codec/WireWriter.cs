using System.Buffers;
using System.Buffers.Binary;
using System.Text;

namespace Appliance.Wire.Codec;

/// <summary>
/// Encodes little-endian primitives, byte strings and versioned structures into a growable pooled buffer. Dispose
/// returns the buffer to the pool.
/// </summary>
public sealed class WireWriter : IDisposable
{
    /// <summary>The pool for frame-sized buffers. The shared pool only keeps arrays up to 1 MiB; frames go to 16 MiB
    /// and allocating those each time would churn the large object heap.</summary>
    public static readonly ArrayPool<byte> Pool = ArrayPool<byte>.Create(maxArrayLength: 32 << 20, maxArraysPerBucket: 32);

    private byte[] _buffer;
    private int _length;
    private readonly bool _pooled = true;

    public WireWriter(int initialCapacity = 256)
    {
        _buffer = Pool.Rent(initialCapacity);
    }

    private WireWriter(byte[] buffer)
    {
        _buffer = buffer;
        _pooled = false;
    }

    /// <summary>
    /// A writer whose buffer is not pooled but handed to the caller at the end (<see cref="Detach"/>), for an
    /// encoding that carries bulk data and is sent without a further copy: the data is copied once, into the message,
    /// instead of into a pooled buffer and then again into an array of its own. The buffer is not zeroed first;
    /// give <paramref name="capacity"/> as the size expected (it still grows if that was short).
    /// </summary>
    public static WireWriter ForHandOver(int capacity) => new(GC.AllocateUninitializedArray<byte>(Math.Max(capacity, 16)));

    public int Length => _length;

    public ReadOnlySpan<byte> WrittenSpan => _buffer.AsSpan(0, _length);

    public ReadOnlyMemory<byte> WrittenMemory => _buffer.AsMemory(0, _length);

    public void Clear() => _length = 0;

    public Span<byte> GetSpan(int size)
    {
        if (_buffer.Length - _length < size)
        {
            var wanted = Math.Max(_buffer.Length * 2, _length + size);
            var bigger = _pooled ? Pool.Rent(wanted) : GC.AllocateUninitializedArray<byte>(wanted);
            _buffer.AsSpan(0, _length).CopyTo(bigger);
            if (_pooled)
            {
                Pool.Return(_buffer);
            }
            _buffer = bigger;
        }
        return _buffer.AsSpan(_length, size);
    }

    public void Advance(int count) => _length += count;

    public void WriteU8(byte v)
    {
        GetSpan(1)[0] = v;
        _length++;
    }

    public void WriteBool(bool v) => WriteU8(v ? (byte)1 : (byte)0);

    public void WriteU16(ushort v)
    {
        BinaryPrimitives.WriteUInt16LittleEndian(GetSpan(2), v);
        _length += 2;
    }

    public void WriteU32(uint v)
    {
        BinaryPrimitives.WriteUInt32LittleEndian(GetSpan(4), v);
        _length += 4;
    }

    public void WriteI32(int v)
    {
        BinaryPrimitives.WriteInt32LittleEndian(GetSpan(4), v);
        _length += 4;
    }

    public void WriteU64(ulong v)
    {
        BinaryPrimitives.WriteUInt64LittleEndian(GetSpan(8), v);
        _length += 8;
    }

    public void WriteI64(long v)
    {
        BinaryPrimitives.WriteInt64LittleEndian(GetSpan(8), v);
        _length += 8;
    }

    public void WriteFixed(ReadOnlySpan<byte> bytes)
    {
        bytes.CopyTo(GetSpan(bytes.Length));
        _length += bytes.Length;
    }

    public void WriteBytes(ReadOnlySpan<byte> bytes)
    {
        WriteU32((uint)bytes.Length);
        WriteFixed(bytes);
    }

    public void WriteString(string s)
    {
        var n = Encoding.UTF8.GetByteCount(s);
        WriteU32((uint)n);
        Encoding.UTF8.GetBytes(s, GetSpan(n));
        _length += n;
    }

    /// <summary>Starts a versioned structure: <paramref name="version"/> of this encoding and
    /// <paramref name="compat"/>, the oldest reader version that can decode it. Returns the mark for
    /// <see cref="EndStruct"/>, which fills in the length.</summary>
    public int BeginStruct(byte version, byte compat)
    {
        WriteU8(version);
        WriteU8(compat);
        var mark = _length;
        WriteU32(0);
        return mark;
    }

    public void EndStruct(int mark) =>
        BinaryPrimitives.WriteUInt32LittleEndian(_buffer.AsSpan(mark, 4), (uint)(_length - mark - 4));

    public byte[] ToArray() => WrittenSpan.ToArray();

    /// <summary>What was written, handed over without a copy (a <see cref="ForHandOver"/> writer only); the writer
    /// is empty afterwards.</summary>
    public ReadOnlyMemory<byte> Detach()
    {
        if (_pooled)
        {
            throw new InvalidOperationException("only a writer made by ForHandOver hands its buffer over");
        }
        var written = _buffer.AsMemory(0, _length);
        _buffer = [];
        _length = 0;
        return written;
    }

    public void Dispose()
    {
        if (_pooled && _buffer.Length > 0)
        {
            Pool.Return(_buffer);
            _buffer = [];
            _length = 0;
        }
    }
}
