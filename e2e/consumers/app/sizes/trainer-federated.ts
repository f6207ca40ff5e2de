// Bundle size: an app that trains and joins federated rounds.
import { createTrainer } from 'webtune';
import { FederatedClient } from 'webtune/federated';

const trainer = await createTrainer();
const client = new FederatedClient({ url: 'https://coordinator.example', trainer, enrolmentSecret: 'secret' });
console.log(client);
