using System.Buffers;
using System.IO.Pipelines;
using System.Net.Security;
using Appliance.BlockDev.Nbd.Protocol;

namespace Appliance.BlockDev.Nbd.Server;

/// <summary>Fixed newstyle negotiation: greeting, client flags, then options until GO / EXPORT_NAME or ABORT.</summary>
internal sealed partial class NbdConnection
{
    private bool _noZeroes;
    private bool _tls;
    private bool _structuredReplies;
    // The export SET_META_CONTEXT selected base:allocation for (null: none selected).
    private string? _metaContextExport;

    /// <summary>Negotiates; returns the export to serve, or null when the client aborted.</summary>
    private async Task<ExportLease?> NegotiateAsync()
    {
        var ct = _cts.Token;

        var greeting = new byte[NbdWire.GreetingSize];
        NbdWire.WriteGreeting(greeting, HandshakeFlags.FixedNewstyle | HandshakeFlags.NoZeroes);
        await _stream.WriteAsync(greeting, ct);

        var result = await _reader.ReadAtLeastAsync(4, ct);
        if (HandshakeParser.ParseClientFlags(result.Buffer, out var clientFlags, out var consumed) != OperationStatus.Done)
        {
            throw result.Buffer.Length < 4
                ? new EndOfStreamException()
                : new ProtocolViolationException("unknown client flags in the handshake");
        }
        _reader.AdvanceTo(result.Buffer.GetPosition(consumed));
        _noZeroes = (clientFlags & ClientFlags.NoZeroes) != 0;
        // A client without FIXED_NEWSTYLE can still send EXPORT_NAME, which is all old clients do; we answer every
        // option the fixed way, which such clients never exercise.

        while (true)
        {
            result = await _reader.ReadAtLeastAsync(NbdLimits.OptionHeaderSize, ct);
            var status = HandshakeParser.ParseOptionHeader(result.Buffer, out var header, out consumed);
            if (status == OperationStatus.NeedMoreData)
            {
                throw new EndOfStreamException();
            }
            if (status == OperationStatus.InvalidData)
            {
                throw new ProtocolViolationException("bad option magic (expected IHAVEOPT)");
            }
            _reader.AdvanceTo(result.Buffer.GetPosition(consumed));

            if (header.Length > NbdLimits.MaxOptionLength)
            {
                if (header.Option == NbdOption.ExportName)
                {
                    // EXPORT_NAME cannot be answered with an error: the only way out is to hang up.
                    throw new ProtocolViolationException($"NBD_OPT_EXPORT_NAME with a {header.Length}-byte name");
                }
                await SkipAsync(header.Length, ct);
                await ReplyErrorAsync(header.Option, OptionReplyType.ErrTooBig, $"option data of {header.Length} bytes is too large (limit {NbdLimits.MaxOptionLength})", ct);
                continue;
            }
            var data = await ReadOptionDataAsync((int)header.Length, ct);
            var outcome = await HandleOptionAsync(header.Option, data, ct);
            if (outcome.Lease is not null || outcome.Abort)
            {
                return outcome.Lease;
            }
        }
    }

    private readonly record struct OptionOutcome(ExportLease? Lease, bool Abort);

    private async Task<OptionOutcome> HandleOptionAsync(NbdOption option, byte[] data, CancellationToken ct)
    {
        var next = new OptionOutcome(null, false);
        if (_options.TlsRequired && !_tls && option is not (NbdOption.StartTls or NbdOption.Abort))
        {
            if (option == NbdOption.ExportName)
            {
                throw new ProtocolViolationException("NBD_OPT_EXPORT_NAME before STARTTLS on a server that requires TLS");
            }
            await ReplyErrorAsync(option, OptionReplyType.ErrTlsReqd, "this server requires TLS: send NBD_OPT_STARTTLS first", ct);
            return next;
        }
        switch (option)
        {
            case NbdOption.Abort:
                // The spec asks for an ACK; the client may already be gone, which is fine.
                try
                {
                    await _stream.WriteAsync(NbdWire.OptionReply(option, OptionReplyType.Ack, []), ct);
                }
                catch (IOException)
                {
                }
                return new OptionOutcome(null, true);

            case NbdOption.List:
                if (data.Length != 0)
                {
                    await ReplyErrorAsync(option, OptionReplyType.ErrInvalid, "NBD_OPT_LIST takes no data", ct);
                    return next;
                }
                foreach (var name in await _server.Exports.ListNamesAsync(ct))
                {
                    await _stream.WriteAsync(NbdWire.ServerReply(name, await _server.Exports.DescribeAsync(name, ct)), ct);
                }
                await ReplyAckAsync(option, ct);
                return next;

            case NbdOption.StartTls:
                await StartTlsAsync(data, ct);
                return next;

            case NbdOption.StructuredReply:
                if (data.Length != 0)
                {
                    await ReplyErrorAsync(option, OptionReplyType.ErrInvalid, "NBD_OPT_STRUCTURED_REPLY takes no data", ct);
                    return next;
                }
                _structuredReplies = true;
                await ReplyAckAsync(option, ct);
                return next;

            case NbdOption.ListMetaContext or NbdOption.SetMetaContext:
                await MetaContextAsync(option, data, ct);
                return next;

            case NbdOption.Info or NbdOption.Go:
                return new OptionOutcome(await InfoOrGoAsync(option, data, ct), false);

            case NbdOption.ExportName:
                return new OptionOutcome(await ExportNameAsync(data, ct), false);

            default:
                // Includes EXTENDED_HEADERS, which we do not implement: the negotiation goes on without it.
                await ReplyErrorAsync(option, OptionReplyType.ErrUnsup, $"option {(uint)option} is not supported by this server", ct);
                return next;
        }
    }

    private async Task StartTlsAsync(byte[] data, CancellationToken ct)
    {
        if (_options.TlsCertificate is null)
        {
            await ReplyErrorAsync(NbdOption.StartTls, OptionReplyType.ErrPolicy, "this server is not configured for TLS", ct);
            return;
        }
        if (_tls)
        {
            await ReplyErrorAsync(NbdOption.StartTls, OptionReplyType.ErrInvalid, "TLS is already in use", ct);
            return;
        }
        if (data.Length != 0)
        {
            await ReplyErrorAsync(NbdOption.StartTls, OptionReplyType.ErrInvalid, "NBD_OPT_STARTTLS takes no data", ct);
            return;
        }
        await ReplyAckAsync(NbdOption.StartTls, ct);
        // The client starts the TLS handshake only after our ACK, so nothing may be buffered past the option.
        if (_reader.TryRead(out var leftover))
        {
            var extra = leftover.Buffer.Length;
            _reader.AdvanceTo(leftover.Buffer.Start);
            if (extra > 0)
            {
                throw new ProtocolViolationException("data sent after NBD_OPT_STARTTLS before the TLS handshake");
            }
        }
        await _reader.CompleteAsync();
        var ssl = new SslStream(_stream, leaveInnerStreamOpen: false);
        _stream = ssl;
        await ssl.AuthenticateAsServerAsync(new SslServerAuthenticationOptions
        {
            ServerCertificate = _options.TlsCertificate,
            ClientCertificateRequired = false,
        }, ct);
        _reader = PipeReader.Create(ssl, ReaderOptions);
        _tls = true;
        // The spec: no negotiation state survives STARTTLS.
        _structuredReplies = false;
        _metaContextExport = null;
    }

    private async Task MetaContextAsync(NbdOption option, byte[] data, CancellationToken ct)
    {
        if (option == NbdOption.SetMetaContext)
        {
            // SET replaces the selection even when it fails.
            _metaContextExport = null;
        }
        if (!_structuredReplies)
        {
            await ReplyErrorAsync(option, OptionReplyType.ErrInvalid, "negotiate NBD_OPT_STRUCTURED_REPLY first", ct);
            return;
        }
        var request = HandshakeParser.ParseMetaContextRequest(data);
        if (request is null)
        {
            await ReplyErrorAsync(option, OptionReplyType.ErrInvalid, "malformed meta context request", ct);
            return;
        }
        if (await _server.Exports.ResolveAsync(request.ExportName, ct) is not { } export || !await _server.Exports.ExistsAsync(export, ct))
        {
            await ReplyErrorAsync(option, OptionReplyType.ErrUnknown, $"no export named '{request.ExportName}'", ct);
            return;
        }
        if (request.Queries.Count > 256)
        {
            await ReplyErrorAsync(option, OptionReplyType.ErrTooBig, "too many queries", ct);
            return;
        }
        bool matches;
        if (option == NbdOption.ListMetaContext)
        {
            // No query lists everything; "base:" is the wildcard of its namespace; other namespaces are ignored.
            matches = request.Queries.Count == 0 || request.Queries.Any(q => q is "base:" or NbdLimits.BaseAllocation);
            if (matches)
            {
                await _stream.WriteAsync(NbdWire.MetaContext(option, 0, NbdLimits.BaseAllocation), ct);
            }
        }
        else
        {
            matches = request.Queries.Contains(NbdLimits.BaseAllocation);
            if (matches)
            {
                await _stream.WriteAsync(NbdWire.MetaContext(option, NbdLimits.BaseAllocationId, NbdLimits.BaseAllocation), ct);
                _metaContextExport = export;
            }
        }
        await ReplyAckAsync(option, ct);
    }

    private async Task<ExportLease?> InfoOrGoAsync(NbdOption option, byte[] data, CancellationToken ct)
    {
        var request = HandshakeParser.ParseInfoRequest(data);
        if (request is null)
        {
            await ReplyErrorAsync(option, OptionReplyType.ErrInvalid, "malformed NBD_OPT_INFO/GO request", ct);
            return null;
        }
        var name = await _server.Exports.ResolveAsync(request.ExportName, ct);
        ExportLease? lease;
        string? refusal;
        try
        {
            (lease, refusal) = name is null ? (null, null) : await _server.Exports.AcquireAsync(name, ct);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // The image exists but cannot be opened (permissions, a lock held by `image rm`...): say so, go on.
            Log($"cannot open export '{name}': {e.Message}");
            await ReplyErrorAsync(option, OptionReplyType.ErrPolicy, $"export '{name}' cannot be opened now: {e.Message}", ct);
            return null;
        }
        if (refusal is not null)
        {
            // The image exists but may not be served from here now (another server holds it): the reason names it.
            Log($"refused export '{name}': {refusal}");
            await ReplyErrorAsync(option, OptionReplyType.ErrPolicy, $"export '{name}': {refusal}", ct);
            return null;
        }
        if (lease is null)
        {
            await ReplyErrorAsync(option, OptionReplyType.ErrUnknown,
                request.ExportName.Length == 0 ? "no default export: name one (NBD_OPT_LIST lists them)" : $"no export named '{request.ExportName}'", ct);
            return null;
        }
        try
        {
            await _stream.WriteAsync(NbdWire.InfoExport(option, lease.Image.Size, FlagsFor(lease)), ct);
            foreach (var item in request.Items.Distinct())
            {
                var reply = item switch
                {
                    InfoType.Name => NbdWire.InfoString(option, InfoType.Name, lease.Name),
                    InfoType.Description => await _server.Exports.DescribeAsync(lease.Name, ct) is { } d ? NbdWire.InfoString(option, InfoType.Description, d) : null,
                    InfoType.BlockSize => NbdWire.InfoBlockSize(option, 1, 4096, NbdLimits.MaxPayload),
                    _ => null,
                };
                if (reply is not null)
                {
                    await _stream.WriteAsync(reply, ct);
                }
            }
            await ReplyAckAsync(option, ct);
        }
        catch
        {
            await lease.DisposeAsync();
            throw;
        }
        if (option == NbdOption.Info)
        {
            await lease.DisposeAsync();
            return null;
        }
        return lease;
    }

    private async Task<ExportLease?> ExportNameAsync(byte[] data, CancellationToken ct)
    {
        var requested = HandshakeParser.ParseExportName(data)
            ?? throw new ProtocolViolationException("NBD_OPT_EXPORT_NAME with an invalid name");
        var name = await _server.Exports.ResolveAsync(requested, ct);
        // EXPORT_NAME cannot fail politely: an unknown (or refused) export ends the session.
        var (lease, refusal) = name is null ? (null, null) : await _server.Exports.AcquireAsync(name, ct);
        if (lease is null)
        {
            throw new ProtocolViolationException(refusal is null
                ? $"NBD_OPT_EXPORT_NAME for unknown export '{requested}'"
                : $"NBD_OPT_EXPORT_NAME for export '{requested}', refused: {refusal}");
        }
        try
        {
            await _stream.WriteAsync(NbdWire.ExportNameReply(lease.Image.Size, FlagsFor(lease), _noZeroes), ct);
        }
        catch
        {
            await lease.DisposeAsync();
            throw;
        }
        return lease;
    }

    /// <summary>The transmission flags of an export: only what is implemented, and what holds for it.</summary>
    private TransmissionFlags FlagsFor(ExportLease lease)
    {
        var image = lease.Image;
        var flags = TransmissionFlags.HasFlags | TransmissionFlags.SendFlush | TransmissionFlags.SendFua | TransmissionFlags.SendCache;
        if (image.IsReadOnly)
        {
            flags |= TransmissionFlags.ReadOnly;
        }
        else
        {
            flags |= TransmissionFlags.SendTrim | TransmissionFlags.SendWriteZeroes | TransmissionFlags.SendFastZero;
        }
        if (_structuredReplies)
        {
            flags |= TransmissionFlags.SendDf;
        }
        if (image.FlushCoversAllWriters)
        {
            flags |= TransmissionFlags.CanMultiConn;
        }
        return flags;
    }

    private async Task<byte[]> ReadOptionDataAsync(int length, CancellationToken ct)
    {
        if (length == 0)
        {
            return [];
        }
        var result = await _reader.ReadAtLeastAsync(length, ct);
        if (result.Buffer.Length < length)
        {
            throw new EndOfStreamException();
        }
        var data = result.Buffer.Slice(0, length).ToArray();
        _reader.AdvanceTo(result.Buffer.GetPosition(length));
        return data;
    }

    private async Task SkipAsync(long length, CancellationToken ct)
    {
        while (length > 0)
        {
            var result = await _reader.ReadAsync(ct);
            var n = Math.Min(length, result.Buffer.Length);
            _reader.AdvanceTo(result.Buffer.GetPosition(n));
            length -= n;
            if (length > 0 && result.IsCompleted)
            {
                throw new EndOfStreamException();
            }
        }
    }

    private ValueTask ReplyAckAsync(NbdOption option, CancellationToken ct) =>
        _stream.WriteAsync(NbdWire.OptionReply(option, OptionReplyType.Ack, []), ct);

    private ValueTask ReplyErrorAsync(NbdOption option, OptionReplyType type, string message, CancellationToken ct) =>
        _stream.WriteAsync(NbdWire.OptionError(option, type, message), ct);
}
