using System.Buffers.Binary;
using System.Text;

namespace Appliance.Wire.Codec;

/// <summary>
/// Decodes little-endian primitives, length-prefixed byte strings and versioned structures from a span. Every read
/// is bounds-checked and fails with <see cref="WireFormatException"/>: bad input never produces another exception.
/// </summary>
public ref struct WireReader
{
    private readonly ReadOnlySpan<byte> _buffer;
    private readonly ReadOnlyMemory<byte> _memory;
    private readonly bool _hasMemory;
    private int _position;
    private int _limit;

    public WireReader(ReadOnlySpan<byte> buffer)
    {
        _buffer = buffer;
        _limit = buffer.Length;
    }

    /// <summary>A reader over memory: <see cref="ReadBytesShared"/> then returns slices of it instead of copies.</summary>
    public WireReader(ReadOnlyMemory<byte> memory)
    {
        _buffer = memory.Span;
        _memory = memory;
        _hasMemory = true;
        _limit = memory.Length;
    }

    public readonly int Position => _position;

    /// <summary>Bytes left before the end of the buffer, or of the structure being read.</summary>
    public readonly int Remaining => _limit - _position;

    private ReadOnlySpan<byte> Take(int count)
    {
        if (count < 0 || count > Remaining)
        {
            throw new WireFormatException($"truncated: need {count} bytes at offset {_position}, have {Remaining}");
        }
        var s = _buffer.Slice(_position, count);
        _position += count;
        return s;
    }

    public byte ReadU8() => Take(1)[0];

    public bool ReadBool() => ReadU8() switch
    {
        0 => false,
        1 => true,
        var b => throw new WireFormatException($"bad boolean {b} at offset {_position - 1}"),
    };

    public ushort ReadU16() => BinaryPrimitives.ReadUInt16LittleEndian(Take(2));

    public uint ReadU32() => BinaryPrimitives.ReadUInt32LittleEndian(Take(4));

    public int ReadI32() => BinaryPrimitives.ReadInt32LittleEndian(Take(4));

    public ulong ReadU64() => BinaryPrimitives.ReadUInt64LittleEndian(Take(8));

    public long ReadI64() => BinaryPrimitives.ReadInt64LittleEndian(Take(8));

    /// <summary>A u32 length then that many bytes; refuses lengths over <paramref name="maxLength"/>.</summary>
    public ReadOnlySpan<byte> ReadBytes(int maxLength = 64 << 20)
    {
        var length = ReadU32();
        if (length > (uint)maxLength)
        {
            throw new WireFormatException($"byte string of {length} bytes exceeds the limit of {maxLength}");
        }
        return Take((int)length);
    }

    /// <summary>
    /// A u32 length then that many bytes, as memory: a slice of the reader's memory when it was made over memory
    /// (no copy: valid as long as that memory is), else a copy.
    /// </summary>
    public ReadOnlyMemory<byte> ReadBytesShared(int maxLength = 64 << 20)
    {
        var bytes = ReadBytes(maxLength);
        return _hasMemory ? _memory.Slice(_position - bytes.Length, bytes.Length) : bytes.ToArray();
    }

    public ReadOnlySpan<byte> ReadFixed(int count) => Take(count);

    public string ReadString(int maxBytes = 4096)
    {
        var bytes = ReadBytes(maxBytes);
        try
        {
            return new UTF8Encoding(false, throwOnInvalidBytes: true).GetString(bytes);
        }
        catch (DecoderFallbackException)
        {
            throw new WireFormatException($"string at offset {_position - bytes.Length} is not valid UTF-8");
        }
    }

    /// <summary>
    /// Enters a versioned structure written by <see cref="WireWriter.BeginStruct"/>: reads its version, the oldest
    /// version able to read it (compat) and its length. Fails if compat is newer than <paramref name="ourVersion"/>;
    /// the caller reads the fields it knows, then <see cref="EndStruct"/> skips the fields a newer writer added.
    /// </summary>
    public StructScope BeginStruct(byte ourVersion, string what)
    {
        var version = ReadU8();
        var compat = ReadU8();
        var length = ReadU32();
        if (compat > ourVersion)
        {
            throw new WireFormatException($"{what} version {version} needs a reader of version {compat}; this one reads up to {ourVersion}");
        }
        if (length > (uint)Remaining)
        {
            throw new WireFormatException($"{what} claims {length} bytes, only {Remaining} remain");
        }
        var scope = new StructScope(version, _limit, _position + (int)length);
        _limit = scope.End;
        return scope;
    }

    public void EndStruct(StructScope scope)
    {
        _position = scope.End;
        _limit = scope.OuterLimit;
    }

    /// <summary>Fails unless everything was consumed (a message must not carry unread garbage).</summary>
    public readonly void ExpectEnd(string what)
    {
        if (Remaining != 0)
        {
            throw new WireFormatException($"{Remaining} unexpected bytes after {what}");
        }
    }
}

/// <summary>A versioned structure being read; <see cref="Version"/> tells which optional fields are present.</summary>
public readonly record struct StructScope(byte Version, int OuterLimit, int End);
