namespace Appliance.BlockDev.Nbd.Protocol;

/// <summary>Magic numbers of the NBD protocol (doc/proto.md of NetworkBlockDevice/nbd). All big-endian on the wire.</summary>
public static class NbdMagic
{
    /// <summary>"NBDMAGIC": the first 8 bytes the server sends.</summary>
    public const ulong NbdMagicValue = 0x4e42444d41474943;
    /// <summary>"IHAVEOPT": newstyle negotiation, and the prefix of every option the client sends.</summary>
    public const ulong IHaveOpt = 0x49484156454F5054;
    /// <summary>Prefix of every option reply.</summary>
    public const ulong OptionReply = 0x3e889045565a9;
    /// <summary>Prefix of every transmission request.</summary>
    public const uint Request = 0x25609513;
    /// <summary>Prefix of a simple reply.</summary>
    public const uint SimpleReply = 0x67446698;
    /// <summary>Prefix of a structured reply chunk.</summary>
    public const uint StructuredReply = 0x668e33ef;
}

/// <summary>Handshake flags (server, 16 bits).</summary>
[Flags]
public enum HandshakeFlags : ushort
{
    None = 0,
    FixedNewstyle = 1 << 0,
    NoZeroes = 1 << 1,
}

/// <summary>Client flags (32 bits).</summary>
[Flags]
public enum ClientFlags : uint
{
    None = 0,
    FixedNewstyle = 1 << 0,
    NoZeroes = 1 << 1,
}

/// <summary>Transmission flags (16 bits), sent with the export size.</summary>
[Flags]
public enum TransmissionFlags : ushort
{
    None = 0,
    HasFlags = 1 << 0,
    ReadOnly = 1 << 1,
    SendFlush = 1 << 2,
    SendFua = 1 << 3,
    Rotational = 1 << 4,
    SendTrim = 1 << 5,
    SendWriteZeroes = 1 << 6,
    SendDf = 1 << 7,
    CanMultiConn = 1 << 8,
    SendResize = 1 << 9,
    SendCache = 1 << 10,
    SendFastZero = 1 << 11,
}

/// <summary>Option types of the handshake phase.</summary>
public enum NbdOption : uint
{
    ExportName = 1,
    Abort = 2,
    List = 3,
    PeekExport = 4,
    StartTls = 5,
    Info = 6,
    Go = 7,
    StructuredReply = 8,
    ListMetaContext = 9,
    SetMetaContext = 10,
    ExtendedHeaders = 11,
}

/// <summary>Option reply types. Errors have bit 31 set.</summary>
public enum OptionReplyType : uint
{
    Ack = 1,
    Server = 2,
    Info = 3,
    MetaContext = 4,
    ErrUnsup = 0x80000000 + 1,
    ErrPolicy = 0x80000000 + 2,
    ErrInvalid = 0x80000000 + 3,
    ErrPlatform = 0x80000000 + 4,
    ErrTlsReqd = 0x80000000 + 5,
    ErrUnknown = 0x80000000 + 6,
    ErrShutdown = 0x80000000 + 7,
    ErrBlockSizeReqd = 0x80000000 + 8,
    ErrTooBig = 0x80000000 + 9,
}

/// <summary>Information types in NBD_REP_INFO replies (and requested by OPT_INFO / OPT_GO).</summary>
public enum InfoType : ushort
{
    Export = 0,
    Name = 1,
    Description = 2,
    BlockSize = 3,
}

/// <summary>Transmission commands.</summary>
public enum NbdCommand : ushort
{
    Read = 0,
    Write = 1,
    Disc = 2,
    Flush = 3,
    Trim = 4,
    Cache = 5,
    WriteZeroes = 6,
    BlockStatus = 7,
}

/// <summary>Command flags (16 bits).</summary>
[Flags]
public enum CommandFlags : ushort
{
    None = 0,
    Fua = 1 << 0,
    NoHole = 1 << 1,
    Df = 1 << 2,
    ReqOne = 1 << 3,
    FastZero = 1 << 4,
    PayloadLen = 1 << 5,
}

/// <summary>Structured reply chunk types. Error chunks have bit 15 set.</summary>
public enum ReplyChunkType : ushort
{
    None = 0,
    OffsetData = 1,
    OffsetHole = 2,
    BlockStatus = 5,
    Error = 0x8000 + 1,
    ErrorOffset = 0x8000 + 2,
}

/// <summary>Structured reply flags.</summary>
[Flags]
public enum ReplyFlags : ushort
{
    None = 0,
    Done = 1 << 0,
}

/// <summary>The error values allowed on the wire (they are Linux errnos, but only these).</summary>
public enum NbdError : uint
{
    None = 0,
    Perm = 1,
    Io = 5,
    NoMem = 12,
    Inval = 22,
    NoSpc = 28,
    Overflow = 75,
    NotSup = 95,
    Shutdown = 108,
}

/// <summary>Flags of the base:allocation metadata context.</summary>
[Flags]
public enum AllocationFlags : uint
{
    /// <summary>Allocated (or unknown) data.</summary>
    Data = 0,
    /// <summary>Not allocated in the backing store.</summary>
    Hole = 1 << 0,
    /// <summary>Reads as zeroes.</summary>
    Zero = 1 << 1,
}

/// <summary>Sizes the protocol and this server fix.</summary>
public static class NbdLimits
{
    /// <summary>Largest READ/WRITE payload we accept: 32 MiB, advertised as the maximum in NBD_INFO_BLOCK_SIZE.</summary>
    public const int MaxPayload = 32 << 20;
    /// <summary>Strings (export names, queries) MUST be no longer than this.</summary>
    public const int MaxString = 4096;
    /// <summary>Largest option payload we read; anything bigger is refused with ERR_TOO_BIG and skipped.</summary>
    public const int MaxOptionLength = 64 << 10;
    /// <summary>Request header size (simple, non-extended).</summary>
    public const int RequestHeaderSize = 28;
    /// <summary>Simple reply header size.</summary>
    public const int SimpleReplyHeaderSize = 16;
    /// <summary>Structured reply chunk header size.</summary>
    public const int StructuredReplyHeaderSize = 20;
    /// <summary>Option request header after the client flags: magic, option, length.</summary>
    public const int OptionHeaderSize = 16;
    /// <summary>Option reply header: magic, option, type, length.</summary>
    public const int OptionReplyHeaderSize = 20;
    /// <summary>Most extents in one block-status chunk (the spec says SHOULD NOT exceed 2^20; we use fewer).</summary>
    public const int MaxExtentsPerReply = 1 << 16;
    /// <summary>The one metadata context we serve.</summary>
    public const string BaseAllocation = "base:allocation";
    /// <summary>Its id in replies to SET_META_CONTEXT and in BLOCK_STATUS chunks.</summary>
    public const uint BaseAllocationId = 1;
}
