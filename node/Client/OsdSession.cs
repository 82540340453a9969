using System.Net;
using Appliance.Wire.Messenger;

namespace Appliance.Client;

/// <summary>
/// The client's session with one OSD at one address: a <see cref="MessengerClient"/> that authenticates with a
/// ticket for service "osd", reconnects and resends on its own. Replaced when the OSD's address changes in the map,
/// closed when the OSD is down (the requests waiting on it then fail with <see cref="ConnectionClosedException"/>
/// and are resent by the client under the newer map).
/// </summary>
internal sealed class OsdSession(int osd, string address, MessengerClient client) : IAsyncDisposable
{
    private readonly TaskCompletionSource<Exception> _refused = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private int _closed;

    public int Osd { get; } = osd;
    public string Address { get; } = address;
    public MessengerClient Client { get; } = client;

    /// <summary>Completes (with the reason) when the OSD refused our ticket: a refused authentication ends a
    /// messenger client for good, so the session must be replaced.</summary>
    public Task<Exception> Refused => _refused.Task;

    public void Start() =>
        _ = Client.StartAsync().ContinueWith(t =>
        {
            if (t.Exception is { } e)
            {
                _refused.TrySetResult(e.InnerException ?? e);
            }
        }, CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);

    /// <summary>"ip:port" as the osdmap writes it, or null when the map's address is not one.</summary>
    public static IPEndPoint? ParseAddress(string address) => IPEndPoint.TryParse(address, out var ep) && ep.Port != 0 ? ep : null;

    public override string ToString() => $"osd.{Osd} at {Address}";

    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _closed, 1) == 0)
        {
            await Client.DisposeAsync();
        }
    }
}
