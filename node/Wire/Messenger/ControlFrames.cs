using Appliance.Wire.Codec;

namespace Appliance.Wire.Messenger;

/// <summary>Frame types below <see cref="FirstMessageType"/> belong to the messenger itself.</summary>
public static class FrameTypes
{
    public const ushort Hello = 1;
    public const ushort Challenge = 2;
    public const ushort Proof = 3;
    public const ushort Accept = 4;
    public const ushort Reject = 5;
    public const ushort Ack = 6;

    /// <summary>Application messages use types from here up.</summary>
    public const ushort FirstMessageType = 256;
}

/// <summary>How a connection protects its frames after authentication.</summary>
public enum ConnectionMode : byte
{
    /// <summary>crc32c on every frame: integrity against accidents.</summary>
    Crc = 0,
    /// <summary>AES-GCM on every frame with per-session keys: integrity and confidentiality against attackers.</summary>
    Secure = 1,
}

/// <summary>The client's opening frame: who it is, which session it resumes, how far it has received, and — when it
/// proves itself with a ticket from the monitors instead of its own key — the sealed ticket and a fresh authenticator
/// (version 2; a ticket-less hello is still readable by version 1 servers, one with a ticket is refused by them).</summary>
internal sealed record HelloFrame(byte[] HandshakeHello, Guid SessionId, ulong LastReceived, ConnectionMode Mode)
{
    private const byte Version = 2;

    /// <summary>The sealed service ticket (empty: the client proves itself with its own key).</summary>
    public byte[] Ticket { get; init; } = [];

    /// <summary>The authenticator made with the ticket's session key (<see cref="Auth.Tickets.Authenticator"/>).</summary>
    public byte[] Authenticator { get; init; } = [];

    public byte[] Encode()
    {
        using var w = new WireWriter();
        var m = w.BeginStruct(Version, Ticket.Length > 0 ? (byte)2 : (byte)1);
        w.WriteBytes(HandshakeHello);
        w.WriteFixed(SessionId.ToByteArray());
        w.WriteU64(LastReceived);
        w.WriteU8((byte)Mode);
        w.WriteBytes(Ticket);
        w.WriteBytes(Authenticator);
        w.EndStruct(m);
        return w.ToArray();
    }

    public static HelloFrame Decode(ReadOnlySpan<byte> bytes)
    {
        var r = new WireReader(bytes);
        var s = r.BeginStruct(Version, "hello frame");
        var hello = r.ReadBytes(1024).ToArray();
        var id = new Guid(r.ReadFixed(16));
        var last = r.ReadU64();
        var mode = r.ReadU8();
        if (mode > (byte)ConnectionMode.Secure)
        {
            throw new WireFormatException($"unknown connection mode {mode}");
        }
        byte[] ticket = [], authenticator = [];
        if (s.Version >= 2)
        {
            ticket = r.ReadBytes(MaxTicket).ToArray();
            authenticator = r.ReadBytes(128).ToArray();
        }
        r.EndStruct(s);
        r.ExpectEnd("hello frame");
        return new HelloFrame(hello, id, last, (ConnectionMode)mode) { Ticket = ticket, Authenticator = authenticator };
    }

    /// <summary>A ticket holds an entity name and its capabilities: a few hundred bytes; 16 KiB is far above any.</summary>
    private const int MaxTicket = 16 << 10;
}

/// <summary>The server's last handshake frame: its proof, and how far it has received in the resumed session.</summary>
/// <summary>The server's acceptance: its proof, how far it received in the session, and its incarnation (a new
/// server process has a new one, and knows nothing of the sessions the old one had).</summary>
internal sealed record AcceptFrame(byte[] ServerProof, ulong LastReceived, Guid Incarnation)
{
    private const byte Version = 2;

    public byte[] Encode()
    {
        using var w = new WireWriter();
        var m = w.BeginStruct(Version, 1);
        w.WriteBytes(ServerProof);
        w.WriteU64(LastReceived);
        w.WriteFixed(Incarnation.ToByteArray());
        w.EndStruct(m);
        return w.ToArray();
    }

    public static AcceptFrame Decode(ReadOnlySpan<byte> bytes)
    {
        var r = new WireReader(bytes);
        var s = r.BeginStruct(Version, "accept frame");
        var proof = r.ReadBytes(64).ToArray();
        var last = r.ReadU64();
        // Version 1 servers did not say: every connection then looks like the same incarnation.
        var incarnation = s.Version >= 2 ? new Guid(r.ReadFixed(16)) : Guid.Empty;
        r.EndStruct(s);
        r.ExpectEnd("accept frame");
        return new AcceptFrame(proof, last, incarnation);
    }
}
