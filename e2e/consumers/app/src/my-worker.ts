// An app's own worker file (for its own bundler options, or to add its own code): importing the
// entry is enough to serve createTrainer({ worker }).
import 'webtune/worker';
